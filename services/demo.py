"""The seed cases (demo.yaml), loaded idempotently and scored at once.

`cerdas demo` loads them into any database; `cerdas serve` on the embedded default loads them on
first start, so a new user sees real figures; against a configured DATABASE_URL nothing is
loaded unless asked.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.metrics.repository import Change
from services.ingest.metrics.service import mark_affected
from services.kit.outbox import mark_dirty
from services.kit.runtime import Runtime
from services.models import Assessment, AssessmentInput, MetricPoint
from services.scoring.engine import link_order
from services.scoring.frameworks import registry
from services.scoring.service import recompute_many

SEED_FILE = Path(__file__).with_name("demo.yaml")


def seed() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SEED_FILE.read_text(encoding="utf-8"))
    return document


async def is_loaded(runtime: Runtime) -> bool:
    first = seed()["assessments"][0]
    async with runtime.sessionmaker() as session:
        found = await session.scalar(
            select(Assessment.id).where(
                Assessment.framework_id == first["framework"],
                Assessment.region_code == first["region"],
                Assessment.period == first["period"],
            )
        )
    return found is not None


async def load(runtime: Runtime) -> int:
    """Upsert the seed cases and recompute everything they touch; returns assessments scored."""
    document = seed()
    async with runtime.sessionmaker() as session, session.begin():
        ids = [await _assessment(session, case) for case in document["assessments"]]
        for point in document["metrics"]:
            await _metric(session, point)
        await mark_dirty(session, ids, None)
    return await settle(runtime)


async def settle(runtime: Runtime) -> int:
    """Recompute every pending assessment, frameworks others link to first, until none wait."""
    order = {
        framework_id: rank for rank, framework_id in enumerate(link_order(registry().values()))
    }
    scored = 0
    while True:
        async with runtime.sessionmaker() as session:
            pending = (
                await session.execute(
                    text(
                        "SELECT r.assessment_id, a.framework_id FROM recompute_request r "
                        "JOIN assessment a ON a.id = r.assessment_id"
                    )
                )
            ).all()
        if not pending:
            return scored
        for rank in sorted({order[framework_id] for _, framework_id in pending}):
            batch = [
                identifier for identifier, framework_id in pending if order[framework_id] == rank
            ]
            await recompute_many(runtime.sessionmaker, batch, None)
            scored += len(batch)


async def _assessment(session: AsyncSession, case: dict[str, Any]) -> uuid.UUID:
    statement = insert(Assessment).values(
        id=uuid.uuid4(),
        region_code=case["region"],
        framework_id=case["framework"],
        period=case["period"],
        stage="final",
        state="published",
        input_revision=0,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["region_code", "framework_id", "period", "stage"],
        set_={"state": "published"},
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


async def _metric(session: AsyncSession, point: dict[str, Any]) -> None:
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
    # The metric-driven assessments of the region and year, as a push would mark them.
    await mark_affected(session, [Change(point["region"], year, point["metric"])], None)
