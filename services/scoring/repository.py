"""SQL of the scoring shell: an assessment's inputs in, its result rows out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, AssessmentInput, RecomputeRun, ResultNode, ResultState


async def lock_assessment(session: AsyncSession, assessment_id: uuid.UUID) -> Assessment | None:
    """The assessment, locked: no input change can commit until this transaction ends."""
    return await session.scalar(
        select(Assessment).where(Assessment.id == assessment_id).with_for_update()
    )


async def result_state(session: AsyncSession, assessment_id: uuid.UUID) -> ResultState | None:
    return await session.get(ResultState, assessment_id)


async def assessed_values(
    session: AsyncSession, assessment_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, str]]:
    """Node id → the value that counts (the assessor's verified one, else the region's own),
    and node id → which of the two it was ("verified" or "self")."""
    rows = await session.execute(
        select(
            AssessmentInput.node_id, AssessmentInput.self_value, AssessmentInput.verified_value
        ).where(AssessmentInput.assessment_id == assessment_id)
    )
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for node_id, self_value, verified_value in rows:
        if verified_value is not None:
            values[node_id], origins[node_id] = verified_value, "verified"
        elif self_value is not None:
            values[node_id], origins[node_id] = self_value, "self"
    return values, origins


async def latest_metrics(
    session: AsyncSession, region_code: str, year: int, keys: Sequence[str]
) -> dict[str, Decimal]:
    """Each metric's value in the latest period of ``year`` (the region-wide series)."""
    if not keys:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT DISTINCT ON (metric) metric, value FROM metric_point
            WHERE region_code = :region AND year = :year AND metric = ANY(:keys)
              AND dimension_key = ''
            ORDER BY metric, period_start DESC
            """
        ),
        {"region": region_code, "year": year, "keys": list(keys)},
    )
    return {row.metric: row.value for row in rows}


async def linked_value(
    session: AsyncSession, assessment: Assessment, framework_id: str, node_id: str
) -> Decimal | None:
    """The value of ``node_id`` in the same region and period on another framework, once that
    assessment is published (a linked view never shows figures still under review)."""
    return await session.scalar(
        select(ResultNode.value)
        .join(Assessment, Assessment.id == ResultNode.assessment_id)
        .where(
            Assessment.region_code == assessment.region_code,
            Assessment.period == assessment.period,
            Assessment.stage == assessment.stage,
            Assessment.framework_id == framework_id,
            Assessment.state == "published",
            ResultNode.node_id == node_id,
        )
    )


async def replace_results(
    session: AsyncSession,
    assessment_id: uuid.UUID,
    rows: list[dict[str, Any]],
    state: dict[str, Any],
) -> None:
    """Replace the whole result set: nodes that no longer exist are gone, nothing is stale."""
    await session.execute(delete(ResultNode).where(ResultNode.assessment_id == assessment_id))
    if rows:
        await session.execute(insert(ResultNode), rows)
    statement = pg_insert(ResultState).values(assessment_id=assessment_id, **state)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[ResultState.assessment_id], set_=state)
    )


async def pending_revision(session: AsyncSession, assessment_id: uuid.UUID) -> int | None:
    revision = await session.scalar(
        text("SELECT revision FROM recompute_request WHERE assessment_id = :id"),
        {"id": assessment_id},
    )
    return None if revision is None else int(revision)


async def clear_request(session: AsyncSession, assessment_id: uuid.UUID, revision: int) -> None:
    await session.execute(
        text("DELETE FROM recompute_request WHERE assessment_id = :id AND revision <= :rev"),
        {"id": assessment_id, "rev": revision},
    )


async def stale_requests(
    session: AsyncSession, older_than: datetime, limit: int
) -> list[tuple[uuid.UUID, int]]:
    rows = await session.execute(
        text(
            """
            SELECT assessment_id, revision FROM recompute_request
            WHERE requested_at < :older_than ORDER BY requested_at LIMIT :limit
            """
        ),
        {"older_than": older_than, "limit": limit},
    )
    return [(row.assessment_id, row.revision) for row in rows]


async def assessment_ids_after(
    session: AsyncSession,
    *,
    framework_id: str | None,
    period: int | None,
    region_code: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[uuid.UUID]:
    """A page of matching assessment ids, in id order (keyset), for batched runs."""
    query = select(Assessment.id).order_by(Assessment.id).limit(limit)
    if framework_id:
        query = query.where(Assessment.framework_id == framework_id)
    if period:
        query = query.where(Assessment.period == period)
    if region_code:
        query = query.where(Assessment.region_code == region_code)
    if after is not None:
        query = query.where(Assessment.id > after)
    return list((await session.scalars(query)).all())


async def stalled_runs(session: AsyncSession, older_than: datetime) -> list[RecomputeRun]:
    """Runs not finished and not advanced lately: their next step was lost (Redis, a crash)."""
    return list(
        (
            await session.scalars(
                select(RecomputeRun).where(
                    RecomputeRun.state.in_(("queued", "running")),
                    RecomputeRun.updated_at < older_than,
                )
            )
        ).all()
    )
