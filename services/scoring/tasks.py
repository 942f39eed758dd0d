"""The scoring worker's jobs. Each may run more than once (a worker dies, the sweeper
re-enqueues): each re-reads fresh state by id and is idempotent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from services.domain.recompute.jobs import RUN_JOB
from services.domain.webhook import service as webhooks
from services.kit.metrics import recompute_job
from services.kit.runtime import Runtime
from services.scoring import service


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op round trip: proves a worker consumes the queue (readiness, benchmarks)."""
    return "pong"


async def recompute_assessment(ctx: dict[str, Any], assessment_id: str) -> str:
    runtime: Runtime = ctx["runtime"]
    with recompute_job("assessment") as counted:
        outcome = await service.recompute(
            runtime.sessionmaker, uuid.UUID(assessment_id), runtime.queue
        )
        counted.value = outcome.outcome
    return outcome.outcome


async def run_recompute(ctx: dict[str, Any], run_id: str) -> str:
    """A few batches of a recompute run, then the next step is enqueued (short, retryable jobs)."""
    runtime: Runtime = ctx["runtime"]
    with recompute_job("run_step") as counted:
        recompute_run = await service.run_step(
            runtime.sessionmaker, uuid.UUID(run_id), runtime.queue
        )
        counted.value = "finished" if recompute_run is None else "continued"
    if recompute_run is None:
        return "finished"
    await runtime.queue.enqueue(RUN_JOB, run_id, job_id=service.run_job_id(recompute_run))
    return f"{recompute_run.done + recompute_run.failed} of {recompute_run.total}"


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    runtime: Runtime = ctx["runtime"]
    settings = runtime.settings
    return await service.sweep(
        runtime.sessionmaker,
        runtime.queue,
        older_than=timedelta(seconds=settings.sweep_seconds),
        job_timeout=timedelta(seconds=settings.job_timeout_seconds),
    )


async def deliver_webhook(ctx: dict[str, Any], delivery_id: int) -> str:
    runtime: Runtime = ctx["runtime"]
    return await webhooks.deliver(
        runtime.sessionmaker,
        delivery_id,
        runtime.queue,
        client=ctx["http"],
        settings=runtime.settings,
    )
