"""The recompute jobs on the queue: their names and ids, shared by whoever enqueues them and the
scoring worker that runs them (services/scoring/tasks.py)."""

from __future__ import annotations

import uuid

RECOMPUTE_JOB = "recompute_assessment"
RUN_JOB = "run_recompute"


def recompute_job_id(assessment_id: uuid.UUID | str, revision: int) -> str:
    """One job per assessment and input revision: a newer revision is a new job, so a change
    made during a recompute is never folded into the running one and lost."""
    return f"recompute:{assessment_id}:{revision}"


def run_start_job_id(run_id: uuid.UUID | str) -> str:
    return f"run:{run_id}:start"


def run_step_job_id(run_id: uuid.UUID | str, cursor_framework: int, cursor_after: object) -> str:
    """A run's next step, named by where the run stands: a step is never enqueued twice."""
    return f"run:{run_id}:{cursor_framework}:{cursor_after}"
