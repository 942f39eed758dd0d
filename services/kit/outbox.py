"""The transactional outbox: an input change and its "recompute this" note commit together.

``mark_dirty`` bumps each assessment's input revision and upserts its outbox row in the caller's
transaction; the enqueue happens only after that transaction commits, and only for assessments
that had no recompute pending (a pending one will see the newer revision). If Redis is down the
enqueue is skipped with a warning and the sweeper picks the row up later.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import after_commit
from services.kit.queue import Queue
from services.models import Assessment, RecomputeRun

RECOMPUTE_JOB = "recompute_assessment"
RUN_JOB = "run_recompute"

_MARK = text(
    """
    WITH locked AS (  -- lock in id order, so concurrent batches cannot deadlock
        SELECT id FROM assessment WHERE id = ANY(:ids) ORDER BY id FOR UPDATE
    ), bumped AS (
        UPDATE assessment SET input_revision = input_revision + 1
        FROM locked WHERE assessment.id = locked.id
        RETURNING assessment.id, assessment.input_revision
    )
    INSERT INTO recompute_request (assessment_id, revision, requested_at)
    SELECT id, input_revision, now() FROM bumped
    ON CONFLICT (assessment_id) DO UPDATE SET revision = excluded.revision
    RETURNING assessment_id, revision, (xmax = 0) AS fresh
    """
)


def recompute_job_id(assessment_id: uuid.UUID | str, revision: int) -> str:
    return f"recompute:{assessment_id}:{revision}"


async def mark_dirty(
    session: AsyncSession, assessment_ids: Iterable[uuid.UUID], queue: Queue | None
) -> int:
    """Record that these assessments must be recomputed; returns how many were marked."""
    ids = sorted(set(assessment_ids))
    if not ids:
        return 0
    rows = (await session.execute(_MARK, {"ids": ids})).all()
    fresh = [(row.assessment_id, row.revision) for row in rows if row.fresh]
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


async def ensure_assessments(
    session: AsyncSession,
    framework_id: str,
    region_years: set[tuple[str, int]],
    *,
    state: str = "draft",
) -> list[uuid.UUID]:
    """The assessments of ``framework_id`` for these regions and years, created if missing
    (in ``state``: computed views that nobody reviews are created published)."""
    if not region_years:
        return []
    regions = [region for region, _ in region_years]
    years = [year for _, year in region_years]
    statement = text(
        """
        INSERT INTO assessment (id, region_code, framework_id, period, stage, state,
                                input_revision, created_at)
        SELECT gen_random_uuid(), r, :framework_id, y, 'final', :state, 0, now()
        FROM unnest(CAST(:regions AS text[]), CAST(:years AS int[])) AS t(r, y)
        ON CONFLICT (region_code, framework_id, period, stage) DO NOTHING
        """
    )
    await session.execute(
        statement,
        {"framework_id": framework_id, "regions": regions, "years": years, "state": state},
    )
    found = await session.execute(
        select(Assessment.id, Assessment.region_code, Assessment.period).where(
            Assessment.framework_id == framework_id,
            Assessment.stage == "final",
            Assessment.region_code.in_(set(regions)),
            Assessment.period.in_(set(years)),
        )
    )
    return [row.id for row in found if (row.region_code, row.period) in region_years]


async def mark_region_years_dirty(
    session: AsyncSession,
    framework_id: str,
    region_years: set[tuple[str, int]],
    *,
    state: str,
    queue: Queue | None,
) -> int:
    """Mark the assessments of ``framework_id`` for these regions and years dirty, creating
    them (in ``state``) where missing; returns how many were marked."""
    ids = await ensure_assessments(session, framework_id, region_years, state=state)
    return await mark_dirty(session, ids, queue)


def run_scope(
    framework_id: str | None, period: int | None, region_code: str | None
) -> list[ColumnElement[bool]]:
    """The assessments a recompute run covers; the run counts and processes the same set."""
    conditions: list[ColumnElement[bool]] = []
    if framework_id:
        conditions.append(Assessment.framework_id == framework_id)
    if period:
        conditions.append(Assessment.period == period)
    if region_code:
        conditions.append(Assessment.region_code == region_code)
    return conditions


async def create_recompute_run(
    session: AsyncSession,
    *,
    framework_id: str | None,
    period: int | None,
    region_code: str | None,
    requested_by: str,
) -> RecomputeRun:
    """A run row over the matching assessments, its total counted; the caller commits."""
    query = select(func.count()).select_from(Assessment)
    query = query.where(*run_scope(framework_id, period, region_code))
    recompute_run = RecomputeRun(
        framework_id=framework_id,
        period=period,
        region_code=region_code,
        state="queued",
        total=int(await session.scalar(query) or 0),
        done=0,
        failed=0,
        cursor_framework=0,
        requested_by=requested_by,
    )
    session.add(recompute_run)
    await session.flush()
    return recompute_run
