"""The scoring shell: load an assessment's inputs, run the engine, replace its results.

A recompute locks the assessment row, so the inputs it reads are exactly those of the revision
it records; an input change arriving meanwhile waits for the lock, bumps the revision after, and
leaves its outbox row for the next run. After the results commit, the outbox row is cleared up
to the computed revision; a newer one left behind is enqueued again, so no change is ever lost.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.kit import results_cache, webhooks
from services.kit.db import run_after_commit
from services.kit.outbox import (
    RECOMPUTE_JOB,
    RUN_JOB,
    ensure_assessments,
    mark_dirty,
    recompute_job_id,
)
from services.kit.queue import Queue
from services.models import Assessment, RecomputeRun
from services.scoring import repository
from services.scoring.engine import Framework, InputError, Inputs, Result, evaluate, link_order
from services.scoring.frameworks import initial_state, registry

log = logging.getLogger(__name__)
RUN_BATCH = 100

Outcome = Literal["computed", "current", "gone", "unknown-framework"]


@dataclass(frozen=True, slots=True)
class Recomputed:
    outcome: Outcome
    revision: int = 0
    index: Decimal | None = None


async def recompute(
    sessionmaker: async_sessionmaker[AsyncSession],
    assessment_id: uuid.UUID,
    queue: Queue | None,
    *,
    force: bool = False,
) -> Recomputed:
    """Bring one assessment's results up to its current input revision (idempotent)."""
    async with sessionmaker() as session:
        async with session.begin():
            outcome = await _recompute_locked(session, assessment_id, queue, force=force)
        await run_after_commit(session)  # enqueue the dependents marked in that transaction
        if outcome.outcome == "computed":
            async with session.begin():  # after the commit: cached reads rebuild from here on
                await results_cache.bump(await session.connection())
        if outcome.outcome in ("computed", "current"):
            await _settle_outbox(session, assessment_id, outcome.revision, queue)
    return outcome


async def _recompute_locked(
    session: AsyncSession, assessment_id: uuid.UUID, queue: Queue | None, *, force: bool
) -> Recomputed:
    assessment = await repository.lock_assessment(session, assessment_id)
    if assessment is None:
        return Recomputed("gone")
    framework = registry().get(assessment.framework_id)
    if framework is None:
        log.error("assessment %s uses unknown framework %s", assessment.id, assessment.framework_id)
        return Recomputed("unknown-framework")
    revision = assessment.input_revision
    state = await repository.result_state(session, assessment.id)
    if (
        not force
        and state is not None
        and state.input_revision >= revision
        and state.framework_hash == framework.content_hash
    ):
        return Recomputed("current", revision, state.index_value)

    inputs, origins = await load_inputs(session, assessment, framework)
    error: str | None = None
    try:
        result = evaluate(framework, inputs)
    except InputError as exc:
        # An input that no longer fits (e.g. a framework file changed): keep the assessment
        # visible as incomplete with the reason, rather than failing the job forever.
        error = str(exc)
        result = evaluate(framework, Inputs())
    computed_at = datetime.now(UTC)
    rows = result_rows(result, assessment.id, revision, computed_at, origins)
    index = result.index.value
    await repository.replace_results(
        session,
        assessment.id,
        rows,
        {
            "input_revision": revision,
            "framework_hash": framework.content_hash,
            "index_value": index,
            "predicate": result.index.predicate,
            "complete": result.complete and error is None,
            "computed_at": computed_at,
            "error": error,
        },
    )
    if state is None or state.index_value != index:
        await _mark_dependents(session, assessment, queue)
        await webhooks.emit(
            session,
            "result.changed",
            {
                "assessment_id": str(assessment.id),
                "region": assessment.region_code,
                "framework": assessment.framework_id,
                "period": assessment.period,
                "index": None if index is None else str(index),
                "previous_index": None
                if state is None or state.index_value is None
                else str(state.index_value),
                "predicate": result.index.predicate,
                "input_revision": revision,
            },
            queue,
        )
    return Recomputed("computed", revision, index)


async def load_inputs(
    session: AsyncSession, assessment: Assessment, framework: Framework
) -> tuple[Inputs, dict[str, str]]:
    """The engine's inputs, and for each entered value whether it is the verified one."""
    values, origins = await repository.assessed_values(session, assessment.id)
    metrics = await repository.latest_metrics(
        session, assessment.region_code, assessment.period, framework.metric_keys
    )
    linked: dict[str, Any] = {}
    for link in framework.links:
        value = await repository.linked_value(session, assessment, link.framework, link.node)
        if value is not None:
            linked[link.ref] = value
    return Inputs(values=values, metrics=metrics, linked=linked), origins


def result_rows(
    result: Result,
    assessment_id: uuid.UUID,
    revision: int,
    computed_at: datetime,
    origins: dict[str, str],
) -> list[dict[str, Any]]:
    return [
        {
            "assessment_id": assessment_id,
            "node_id": node.id,
            "parent_id": node.parent,
            "value": node.value,
            "weight": node.weight,
            "contribution": node.contribution,
            "predicate": node.predicate,
            "source": node.source,
            "detail": {
                "inputs": list(node.inputs),
                "missing": list(node.missing),
                "note": node.note,
                "value_from": origins.get(node.id),
            },
            "input_revision": revision,
            "computed_at": computed_at,
        }
        for node in result.nodes.values()
    ]


async def _mark_dependents(
    session: AsyncSession, assessment: Assessment, queue: Queue | None
) -> None:
    """Frameworks linking to this one, for the same region and period, must follow it."""
    for framework in registry().values():
        if any(link.framework == assessment.framework_id for link in framework.links):
            ids = await ensure_assessments(
                session,
                framework.id,
                {(assessment.region_code, assessment.period)},
                state=initial_state(framework),
            )
            await mark_dirty(session, ids, queue)


async def _settle_outbox(
    session: AsyncSession, assessment_id: uuid.UUID, revision: int, queue: Queue | None
) -> None:
    async with session.begin():
        await repository.clear_request(session, assessment_id, revision)
        pending = await repository.pending_revision(session, assessment_id)
    if pending is not None and queue is not None:
        # A change landed while this run computed: it gets a run of its own.
        await queue.enqueue(
            RECOMPUTE_JOB, str(assessment_id), job_id=recompute_job_id(assessment_id, pending)
        )


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    queue: Queue,
    *,
    older_than: timedelta,
    job_timeout: timedelta,
    limit: int = 1000,
) -> int:
    """Re-enqueue outbox rows that waited too long (Redis was down, a worker died), and runs
    whose next step has not come for longer than a step may take.

    Sweep job ids carry the revision and a time bucket as long as arq's retry window (a dead
    worker's claim on a job lapses after the job timeout + 10 s), so an assessment is swept at
    most once per window however often the sweeper runs.
    """
    now = datetime.now(UTC)
    window = job_timeout + timedelta(seconds=10)
    bucket = int(now.timestamp() // window.total_seconds())
    async with sessionmaker() as session:
        stale = await repository.stale_requests(session, now - older_than, limit)
        runs = await repository.stalled_runs(session, now - window)
    enqueued = 0
    for assessment_id, revision in stale:
        job_id = f"{recompute_job_id(assessment_id, revision)}:sweep{bucket}"
        if await queue.enqueue(RECOMPUTE_JOB, str(assessment_id), job_id=job_id) is not None:
            enqueued += 1
    async with sessionmaker() as session:
        deliveries = await webhooks.due_deliveries(session, limit)
    for delivery_id in deliveries:
        job_id = f"webhook:{delivery_id}:sweep{bucket}"
        if await queue.enqueue(webhooks.DELIVER_JOB, delivery_id, job_id=job_id) is not None:
            enqueued += 1
    for recompute_run in runs:
        job_id = f"{run_job_id(recompute_run)}:sweep{bucket}"
        if await queue.enqueue(RUN_JOB, str(recompute_run.id), job_id=job_id) is not None:
            enqueued += 1
    if stale or runs:
        log.info(
            "sweeper: %d stale recompute requests, %d stalled runs, %d enqueued",
            len(stale),
            len(runs),
            enqueued,
        )
    return enqueued


async def run_step(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID, queue: Queue | None
) -> RecomputeRun | None:
    """Recompute the next batch of a run; returns the run, or None when there is nothing to do.

    The run row is locked for the step and its cursor advanced only with the batch's counts,
    so a step retried after a crash redoes its batch (recomputes are idempotent) and nothing is
    counted twice. Frameworks are taken in link order: the ones others link to come first.
    """
    async with sessionmaker() as session, session.begin():
        recompute_run = await session.scalar(
            select(RecomputeRun).where(RecomputeRun.id == run_id).with_for_update(skip_locked=True)
        )
        if recompute_run is None:
            # Finished, gone, or a step is running right now: that step carries the run on.
            return None
        if recompute_run.state in ("done", "failed"):
            return None
        frameworks = _frameworks_in_link_order(recompute_run.framework_id)
        position, after = recompute_run.cursor_framework, recompute_run.cursor_after
        batch: list[uuid.UUID] = []
        while position < len(frameworks):
            batch = await repository.assessment_ids_after(
                session,
                framework_id=frameworks[position],
                period=recompute_run.period,
                region_code=recompute_run.region_code,
                after=after,
                limit=RUN_BATCH,
            )
            if batch:
                break
            position, after = position + 1, None
        now = datetime.now(UTC)
        if not batch:
            recompute_run.state = "failed" if recompute_run.failed else "done"
            recompute_run.finished_at = recompute_run.updated_at = now
            return None
        done = failed = 0
        for assessment_id in batch:
            try:
                await recompute(sessionmaker, assessment_id, queue, force=True)
                done += 1
            except Exception:
                log.exception("recompute of %s failed in run %s", assessment_id, run_id)
                failed += 1
        recompute_run.state = "running"
        recompute_run.done += done
        recompute_run.failed += failed
        recompute_run.cursor_framework, recompute_run.cursor_after = position, batch[-1]
        recompute_run.updated_at = now
    return recompute_run


def run_job_id(recompute_run: RecomputeRun) -> str:
    return f"run:{recompute_run.id}:{recompute_run.cursor_framework}:{recompute_run.cursor_after}"


def _frameworks_in_link_order(only: str | None) -> list[str]:
    order = link_order(registry().values())
    return [framework_id for framework_id in order if only is None or framework_id == only]
