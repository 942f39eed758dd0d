"""SQL for reads of computed results: served from the rows the worker wrote, never scored on the
fly. Visibility comes as the access policy's :class:`Visibility`; figures across regions take
``published_only`` (the policy's ``not sees_unpublished_figures``).

Rankings, trends, comparisons and dashboards read official assessments only (``OFFICIAL``):
an agency's internal assessment is never in them, whoever asks."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Visibility
from services.domain.assessment.repository import visible
from services.models import (
    Agency,
    Assessment,
    AssessmentState,
    AssessorOutput,
    EvidenceItem,
    Region,
    RegionKind,
    ResultNode,
    ResultState,
)

# An assessment as the API shows it: the assessment, its result state (None before the first
# computation), its region's name and province, and the agency of an internal assessment.
AssessmentRow = Row[Assessment, ResultState | None, str, str | None, Agency | None]
# The region's official assessments: the only ones figures across regions (and periods) count.
OFFICIAL = Assessment.agency_id.is_(None)


def _joined() -> Select[Assessment, ResultState | None, str, str | None, Agency | None]:
    return (
        select(Assessment, ResultState, Region.name, Region.province_code, Agency)
        .join(Region, Region.code == Assessment.region_code)
        .outerjoin(ResultState, ResultState.assessment_id == Assessment.id)
        .outerjoin(Agency, Agency.id == Assessment.agency_id)
    )


def _published(published_only: bool) -> ColumnElement[bool]:
    """Published assessments only, or every assessment (the condition is then always true)."""
    return or_(Assessment.state == AssessmentState.PUBLISHED, literal(not published_only))


async def assessments_page(
    session: AsyncSession,
    *,
    framework: str | None,
    period: int | None,
    region: str | None,
    province: str | None,
    state: str | None,
    after: str | None,
    limit: int,
    visibility: Visibility,
    internal: bool | None = None,
    agency: uuid.UUID | None = None,
) -> Sequence[AssessmentRow]:
    """A page of the assessments ``visibility`` shows, in id order, after ``after``; official
    or internal ones only (``internal``), or one agency's."""
    query = _joined().order_by(Assessment.id).limit(limit)
    if internal is not None:
        query = query.where(Assessment.agency_id.is_not(None) if internal else OFFICIAL)
    if agency is not None:
        query = query.where(Assessment.agency_id == agency)
    if framework:
        query = query.where(Assessment.framework_id == framework)
    if period:
        query = query.where(Assessment.period == period)
    if region:
        query = query.where(Assessment.region_code == region)
    if province:
        query = query.where(Region.province_code == province)
    if state:
        query = query.where(Assessment.state == state)
    if after:
        query = query.where(Assessment.id > uuid.UUID(after))
    query = query.where(visible(visibility))
    return (await session.execute(query)).all()


async def assessment(
    session: AsyncSession, assessment_id: uuid.UUID, visibility: Visibility | None
) -> AssessmentRow | None:
    """The assessment's row, or None when it does not exist or ``visibility`` hides it
    (``visibility`` None: no filter, for callers that checked access already)."""
    query = _joined().where(Assessment.id == assessment_id)
    if visibility is not None:
        query = query.where(visible(visibility))
    return (await session.execute(query)).first()


async def result_nodes(session: AsyncSession, assessment_id: uuid.UUID) -> Sequence[ResultNode]:
    return (
        await session.scalars(select(ResultNode).where(ResultNode.assessment_id == assessment_id))
    ).all()


async def assessor_outputs(
    session: AsyncSession, assessment_id: uuid.UUID
) -> Sequence[AssessorOutput]:
    return (
        await session.scalars(
            select(AssessorOutput).where(AssessorOutput.assessment_id == assessment_id)
        )
    ).all()


async def evidence_counts(session: AsyncSession, assessment_id: uuid.UUID) -> dict[str, int]:
    rows = await session.execute(
        select(func.unnest(EvidenceItem.node_ids).label("node"), func.count())
        .where(EvidenceItem.assessment_id == assessment_id)
        .group_by(text("node"))
    )
    return {node: count for node, count in rows}


# Competition ranking ("1224"): equal indices share a rank, the next rank skips. The previous
# period is ranked the same way, for each region's movement.
RANKING = text(
    """
    WITH current AS (
        SELECT a.region_code, r.name, r.province_code, s.index_value, s.predicate,
               RANK() OVER (ORDER BY s.index_value DESC) AS rank
        FROM assessment a
        JOIN result_state s ON s.assessment_id = a.id
        JOIN region r ON r.code = a.region_code
        WHERE a.framework_id = :framework AND a.period = :period AND a.stage = 'final'
          AND a.agency_id IS NULL  -- official assessments only, never an agency's internal one
          AND s.index_value IS NOT NULL AND (a.state = :published OR NOT :published_only)
          AND (CAST(:province AS text) IS NULL OR r.province_code = :province)
    ), previous AS (
        SELECT a.region_code, r.name, r.province_code, s.index_value, s.predicate,
               RANK() OVER (ORDER BY s.index_value DESC) AS rank
        FROM assessment a
        JOIN result_state s ON s.assessment_id = a.id
        JOIN region r ON r.code = a.region_code
        WHERE a.framework_id = :framework AND a.period = :period - 1 AND a.stage = 'final'
          AND a.agency_id IS NULL  -- official assessments only, never an agency's internal one
          AND s.index_value IS NOT NULL AND (a.state = :published OR NOT :published_only)
          AND (CAST(:province AS text) IS NULL OR r.province_code = :province)
    )
    SELECT current.*, previous.rank AS previous_rank, previous.index_value AS previous_index
    FROM current LEFT JOIN previous USING (region_code)
    ORDER BY current.rank, current.region_code
    """
)


async def ranking(
    session: AsyncSession,
    framework: str,
    period: int,
    province: str | None,
    published_only: bool,
) -> Sequence[Row[Any]]:
    """The ranking's rows (region_code, name, province_code, index_value, predicate, rank,
    previous_rank, previous_index), best first."""
    params = {
        "framework": framework,
        "period": period,
        "province": province,
        "published_only": published_only,
        "published": AssessmentState.PUBLISHED.value,
    }
    return (await session.execute(RANKING, params)).all()


async def trend(
    session: AsyncSession,
    frameworks: Sequence[str],
    region: str,
    published_only: bool,
    agency: uuid.UUID | None = None,
) -> Sequence[Row[int, str, Decimal | None, str | None, datetime]]:
    """A region's official final results on any of ``frameworks`` per period, oldest first;
    with ``agency``, that agency's internal ones instead."""
    return (
        await session.execute(
            select(
                Assessment.period,
                Assessment.framework_id,
                ResultState.index_value,
                ResultState.predicate,
                ResultState.computed_at,
            )
            .join(ResultState, ResultState.assessment_id == Assessment.id)
            .where(
                Assessment.framework_id.in_(frameworks),
                Assessment.region_code == region,
                Assessment.stage == "final",
                OFFICIAL if agency is None else Assessment.agency_id == agency,
                _published(published_only),
            )
            .order_by(Assessment.period, Assessment.framework_id)
        )
    ).all()


async def node_values(
    session: AsyncSession,
    framework: str,
    period: int,
    regions: Sequence[str],
    published_only: bool,
) -> Sequence[Row[str, str, Decimal | None, str | None]]:
    """Every node's value and predicate for each of ``regions``."""
    return (
        await session.execute(
            select(
                Assessment.region_code, ResultNode.node_id, ResultNode.value, ResultNode.predicate
            )
            .join(ResultNode, ResultNode.assessment_id == Assessment.id)
            .where(
                Assessment.framework_id == framework,
                Assessment.period == period,
                Assessment.stage == "final",
                OFFICIAL,
                Assessment.region_code.in_(regions),
                _published(published_only),
            )
        )
    ).all()


async def child_values(
    session: AsyncSession,
    framework: str,
    period: int,
    parent: str,
    province: str | None,
    published_only: bool,
) -> Sequence[Row[str, Decimal | None]]:
    """Every region's values of ``parent``'s children (components, domains), for statistics."""
    query = (
        select(ResultNode.node_id, ResultNode.value)
        .join(Assessment, Assessment.id == ResultNode.assessment_id)
        .join(Region, Region.code == Assessment.region_code)
        .where(
            Assessment.framework_id == framework,
            Assessment.period == period,
            Assessment.stage == "final",
            OFFICIAL,
            ResultNode.parent_id == parent,
            ResultNode.value.is_not(None),
        )
    )
    if province:
        query = query.where(Region.province_code == province)
    if published_only:
        query = query.where(Assessment.state == AssessmentState.PUBLISHED)
    return (await session.execute(query)).all()


async def kab_kota_count(session: AsyncSession, province: str | None) -> int:
    query = select(func.count()).select_from(Region).where(Region.kind != RegionKind.PROVINSI)
    if province:
        query = query.where(Region.province_code == province)
    return int(await session.scalar(query) or 0)
