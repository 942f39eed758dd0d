"""The seed cases (demo.yaml), loaded idempotently and scored at once.

`cerdas demo` loads them into any database; `cerdas serve` on the embedded default loads them on
first start, so a new user sees real figures; against a configured DATABASE_URL nothing is
loaded unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.demo import repository
from services.domain.assessment import repository as assessments
from services.domain.recompute.service import mark_dirty
from services.ingest.metric.repository import Change
from services.ingest.metric.service import mark_affected
from services.kit.runtime import Runtime
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
        found = await assessments.find_same(
            session, first["region"], first["framework"], first["period"], "final"
        )
    return found is not None


async def load(runtime: Runtime) -> int:
    """Upsert the seed cases and recompute everything they touch; returns assessments scored."""
    document = seed()
    async with runtime.sessionmaker() as session, session.begin():
        ids = [await repository.upsert_case(session, case) for case in document["assessments"]]
        for point in document["metrics"]:
            year = await repository.upsert_metric(session, point)
            # The metric-driven assessments of the region and year, as a push would mark them.
            await mark_affected(session, [Change(point["region"], year, point["metric"])], None)
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
            pending = await repository.pending_recomputes(session)
        if not pending:
            return scored
        for rank in sorted({order[framework_id] for _, framework_id in pending}):
            batch = [
                identifier for identifier, framework_id in pending if order[framework_id] == rank
            ]
            await recompute_many(runtime.sessionmaker, batch, None)
            scored += len(batch)
