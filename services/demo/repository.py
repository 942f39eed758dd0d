"""SQL for the seed cases: upserts of published assessments, their values and metrics."""

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


async def upsert_case(session: AsyncSession, case: dict[str, Any]) -> uuid.UUID:
    statement = insert(Assessment).values(
        id=uuid.uuid4(),
        region_code=case["region"],
        framework_id=case["framework"],
        period=case["period"],
        stage="final",
        state=AssessmentState.PUBLISHED,
        input_revision=0,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["region_code", "framework_id", "period", "stage"],
        set_={"state": AssessmentState.PUBLISHED},
    ).returning(Assessment.id)
    assessment_id: uuid.UUID = (await session.execute(upsert)).scalar_one()
    for node_id, value in case["values"].items():
        row = insert(AssessmentInput).values(
            assessment_id=assessment_id,
            node_id=node_id,
            self_value=str(value),
            verified_value=str(value),
            note=case.get("note"),
        )
        await session.execute(
            row.on_conflict_do_update(
                index_elements=["assessment_id", "node_id"],
                set_={"self_value": str(value), "verified_value": str(value)},
            )
        )
    return assessment_id


async def upsert_metric(session: AsyncSession, point: dict[str, Any]) -> int:
    """Upsert a monthly point; returns its year."""
    period = str(point["period"])
    year, month = (int(part) for part in period.split("-"))
    statement = insert(MetricPoint).values(
        region_code=point["region"],
        metric=point["metric"],
        period=period,
        period_start=date(year, month, 1),
        year=year,
        dimensions={},
        dimension_key="",
        value=point["value"],
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["region_code", "metric", "period", "dimension_key"],
            set_={"value": point["value"]},
        )
    )
    return year
