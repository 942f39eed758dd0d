"""SQL for recompute requests (the outbox) and recompute runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, RecomputeRun

# Bump the revisions of the assessments ``{locked}`` selects and upsert their outbox rows.
_BUMP = """
    WITH locked AS (  -- lock in id order, so concurrent batches cannot deadlock
        {locked} ORDER BY a.id FOR UPDATE OF a
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
_MARK = text(_BUMP.format(locked="SELECT a.id FROM assessment a WHERE a.id = ANY(:ids)"))
# The same for official final-stage assessments named by key. A statement after the insert
# that creates them, so it sees what a concurrent push (which that insert waited for) created.
_MARK_FINAL = text(
    _BUMP.format(
        locked="""SELECT a.id
        FROM unnest(CAST(:frameworks AS text[]), CAST(:regions AS text[]),
                    CAST(:years AS int[])) AS t(f, r, y)
        JOIN assessment a
          ON a.region_code = t.r AND a.framework_id = t.f AND a.period = t.y
             AND a.stage = 'final' AND a.agency_id IS NULL"""
    )
)

# The official final-stage assessments of some frameworks, regions and years, created where
# missing, each in its framework's starting state. Inserted in key order,
# so two pushes creating the same assessments wait for each other rather than deadlock.
_ENSURE_MANY = text(
    """
    INSERT INTO assessment (id, region_code, framework_id, period, stage, state,
                            input_revision, created_at)
    SELECT gen_random_uuid(), r, f, y, 'final', s, 0, now()
    FROM unnest(CAST(:frameworks AS text[]), CAST(:regions AS text[]), CAST(:years AS int[]),
                CAST(:states AS text[])) AS t(f, r, y, s)
    ORDER BY r, f, y
    ON CONFLICT (region_code, framework_id, period, stage) WHERE agency_id IS NULL DO NOTHING
    """
)


async def bump_revisions(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, int, bool]]:
    """Bump each assessment's input revision and upsert its outbox row: (id, revision, whether
    the row is new, i.e. no recompute was pending)."""
    rows = await session.execute(_MARK, {"ids": list(assessment_ids)})
    return [(row.assessment_id, row.revision, bool(row.fresh)) for row in rows]


async def mark_final_assessments(
    session: AsyncSession, wanted: Sequence[tuple[str, str, int, str]]
) -> list[tuple[uuid.UUID, int, bool]]:
    """:func:`bump_revisions` for official final-stage assessments named by key, created
    where missing (an agency's internal assessment is never one): two statements. ``wanted``
    is (framework id, region code, year, the state a new one starts in) for each."""
    keys = {
        "frameworks": [framework for framework, _, _, _ in wanted],
        "regions": [region for _, region, _, _ in wanted],
        "years": [year for _, _, year, _ in wanted],
    }
    await session.execute(_ENSURE_MANY, {**keys, "states": [s for _, _, _, s in wanted]})
    rows = await session.execute(_MARK_FINAL, keys)
    return [(row.assessment_id, row.revision, bool(row.fresh)) for row in rows]


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


async def count_in_scope(
    session: AsyncSession, framework_id: str | None, period: int | None, region_code: str | None
) -> int:
    query = select(func.count()).select_from(Assessment)
    query = query.where(*run_scope(framework_id, period, region_code))
    return int(await session.scalar(query) or 0)


async def add_run(session: AsyncSession, run: RecomputeRun) -> RecomputeRun:
    session.add(run)
    await session.flush()
    await session.refresh(run)
    return run


async def get_run(session: AsyncSession, run_id: uuid.UUID) -> RecomputeRun | None:
    return await session.get(RecomputeRun, run_id)


async def backlog(session: AsyncSession) -> tuple[int, float | None]:
    """(waiting requests, age in seconds of the oldest by the database's clock, or None).
    ``clock_timestamp()``, not ``now()``: the time of the query, not of its transaction."""
    row = (
        await session.execute(
            text(
                "SELECT count(*) AS waiting, EXTRACT(EPOCH FROM clock_timestamp() - "
                "min(requested_at)) AS oldest FROM recompute_request"
            )
        )
    ).one()
    return int(row.waiting), None if row.oldest is None else float(row.oldest)
