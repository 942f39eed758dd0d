"""SQL for the seed cases: published assessments, their values and metric points, each written
only where absent (nothing that exists is ever changed)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, AssessmentInput, AssessmentState, MetricPoint


async def pending_recomputes(session: AsyncSession) -> list[tuple[uuid.UUID, str]]:
    """Every assessment waiting for a recompute, with its framework."""
    rows = await session.execute(
        text(
            "SELECT r.assessment_id, a.framework_id FROM recompute_request r "
            "JOIN assessment a ON a.id = r.assessment_id"
        )
    )
    return [(row.assessment_id, row.framework_id) for row in rows]


async def add_assessment(
    session: AsyncSession, region: str, framework_id: str, period: int, state: AssessmentState
) -> uuid.UUID | None:
    """A new final assessment in ``state``; None if one exists already (it is left as it is)."""
    statement = (
        insert(Assessment)
        .values(
            id=uuid.uuid4(),
            region_code=region,
            framework_id=framework_id,
            period=period,
            stage="final",
            state=state,
            input_revision=0,
        )
        .on_conflict_do_nothing(
            index_elements=["region_code", "framework_id", "period", "stage"],
            index_where=Assessment.agency_id.is_(None),  # the official one
        )
        .returning(Assessment.id)
    )
    created: uuid.UUID | None = (await session.execute(statement)).scalar_one_or_none()
    return created


async def add_inputs(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Input rows of a just-created assessment."""
    if rows:
        await session.execute(insert(AssessmentInput), rows)


async def add_metric(session: AsyncSession, point: dict[str, Any]) -> int | None:
    """A monthly point, unless one is stored for its key; returns its year if added."""
    period = str(point["period"])
    year, month = (int(part) for part in period.split("-"))
    statement = (
        insert(MetricPoint)
        .values(
            region_code=point["region"],
            metric=point["metric"],
            period=period,
            period_start=date(year, month, 1),
            year=year,
            dimensions={},
            dimension_key="",
            value=point["value"],
        )
        .on_conflict_do_nothing(index_elements=["region_code", "metric", "period", "dimension_key"])
        .returning(MetricPoint.id)
    )
    added = (await session.execute(statement)).scalar_one_or_none()
    return None if added is None else year
