"""The delivery job on the queue, shared by whoever emits events and the worker that delivers
them (services/scoring/tasks.py)."""

from __future__ import annotations

DELIVER_JOB = "deliver_webhook"


def delivery_job_id(delivery_id: int, attempt: int) -> str:
    """One job per delivery attempt: a retry is a new job, a repeated enqueue is refused."""
    return f"webhook:{delivery_id}:{attempt}"
