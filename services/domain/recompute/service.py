"""Asking for recomputes: the transactional outbox and recompute runs.

``mark_dirty`` bumps each assessment's input revision and upserts its outbox row in the caller's
transaction; the enqueue happens only after that transaction commits, and only for assessments
that had no recompute pending (a pending one will see the newer revision). If Redis is down the
enqueue is skipped with a warning and the sweeper picks the row up later.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context
from services.domain.assessment.states import initial_state
from services.domain.audit import service as audit
from services.domain.recompute import repository
from services.domain.recompute.jobs import (
    RECOMPUTE_JOB,
    RUN_JOB,
    recompute_job_id,
    run_start_job_id,
)
from services.domain.region import repository as regions
from services.kit.db import after_commit
from services.kit.errors import NotFound
from services.kit.queue import Queue
from services.models import Assessment, RecomputeRun
from services.scoring.engine import Framework
from services.scoring.frameworks import registry


async def mark_dirty(
    session: AsyncSession, assessment_ids: Iterable[uuid.UUID], queue: Queue | None
) -> int:
    """Record that these assessments must be recomputed; returns how many were marked."""
    ids = sorted(set(assessment_ids))
    if not ids:
        return 0
    return _enqueue_fresh(session, await repository.bump_revisions(session, ids), queue)


def _enqueue_fresh(
    session: AsyncSession, rows: list[tuple[uuid.UUID, int, bool]], queue: Queue | None
) -> int:
    """After the commit, enqueue a recompute of each bumped assessment that had none pending
    (``rows``: id, revision, whether its outbox row is new); returns how many were bumped."""
    fresh = [(assessment_id, revision) for assessment_id, revision, new in rows if new]
    if queue is not None and fresh:

        async def enqueue() -> None:
            for assessment_id, revision in fresh:
                await queue.enqueue(
                    RECOMPUTE_JOB,
                    str(assessment_id),
                    job_id=recompute_job_id(assessment_id, revision),
                )

        after_commit(session, enqueue)
    return len(rows)


async def mark_readers_dirty(
    session: AsyncSession,
    reads: Callable[[Framework], set[tuple[str, int]]],
    queue: Queue | None,
) -> int:
    """For every framework, mark dirty the regions and years whose inputs changed for it.

    ``reads(framework)`` names them: the regions and years of new metric values the framework
    reads, or of changed results of the frameworks it links to. Only periods a framework is in
    force for: a 2019 metric opens no view of an instrument that starts in 2021. Missing
    assessments are created as the framework's workflow starts them (computed views
    published). Two statements, however many frameworks read the change."""
    wanted = [
        (framework.id, region, year, str(initial_state(framework)))
        for framework in registry().values()
        for region, year in sorted(reads(framework))
        if framework.in_force.covers(year)
    ]
    if not wanted:
        return 0
    return _enqueue_fresh(session, await repository.mark_final_assessments(session, wanted), queue)


async def mark_followers_dirty(
    session: AsyncSession, changed: Sequence[Assessment], queue: Queue | None
) -> int:
    """Views linking to these assessments' frameworks, for the same region and period, must
    follow them: when a result changes, and when a publication or a correction changes
    whether a view may read it. An agency's internal assessment has no followers: no view
    reads it."""
    changed = [assessment for assessment in changed if not assessment.internal]
    if not changed:
        return 0

    def reads(framework: Framework) -> set[tuple[str, int]]:
        sources = {link.framework for link in framework.links}
        return {(a.region_code, a.period) for a in changed if a.framework_id in sources}

    return await mark_readers_dirty(session, reads, queue)


async def create_run(
    session: AsyncSession,
    context: Context,
    *,
    framework_id: str | None,
    period: int | None,
    region_code: str | None,
    queue: Queue | None,
) -> RecomputeRun:
    """A run over the matching assessments, its total counted; started after the commit.
    404 for an unknown framework or region."""
    if framework_id is not None and framework_id not in registry():
        raise NotFound(f"No framework {framework_id!r}.")
    if region_code is not None and await regions.get(session, region_code) is None:
        raise NotFound(f"No region with Kemendagri code {region_code!r}.")
    total = await repository.count_in_scope(session, framework_id, period, region_code)
    run = await repository.add_run(
        session,
        RecomputeRun(
            framework_id=framework_id,
            period=period,
            region_code=region_code,
            state="queued",
            total=total,
            done=0,
            failed=0,
            cursor_framework=0,
            requested_by=context.principal.name,
            requested_by_key=context.principal.key_id,
        ),
    )
    audit.record(
        session,
        context,
        action="recompute_run.create",
        entity="recompute_run",
        entity_id=str(run.id),
        after={
            "framework": framework_id,
            "period": period,
            "region": region_code,
            "total": total,
        },
    )
    if queue is not None:

        async def start() -> None:
            await queue.enqueue(RUN_JOB, str(run.id), job_id=run_start_job_id(run.id))

        after_commit(session, start)
    return run


async def outbox_backlog(session: AsyncSession) -> tuple[int, float | None]:
    """How many assessments wait for a recompute, and how many seconds the longest-waiting one
    has waited (None when none): what ``/metrics`` reports as the outbox backlog."""
    return await repository.backlog(session)
