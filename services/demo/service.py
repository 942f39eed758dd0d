"""The seed cases (demo.yaml), loaded where absent and scored at once.

`cerdas demo` loads them into any database; `cerdas serve` on the embedded default loads them on
first start, so a new user sees real figures; against a configured DATABASE_URL nothing is
loaded unless asked. A case whose assessment exists already, or a metric point already stored,
is left exactly as it is: the demo never overwrites live data. What it adds is audited, as
the `cerdas demo` operator.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from services.demo import repository
from services.domain.access.principal import operator_context
from services.domain.assessment import repository as assessments
from services.domain.audit import service as audit
from services.domain.recompute.service import mark_dirty
from services.ingest.metric.repository import Change
from services.ingest.metric.service import mark_affected
from services.kit.runtime import Runtime
from services.models import AssessmentState
from services.scoring.engine import Framework, link_order
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
    """Add the seed cases that are absent and recompute what they touch; returns how many
    assessments were scored."""
    document = seed()
    frameworks = registry()
    context = operator_context("cerdas demo", request_prefix="demo")
    async with runtime.sessionmaker() as session, session.begin():
        created: list[uuid.UUID] = []
        for case in document["assessments"]:
            framework = frameworks[case["framework"]]
            own = bool(case.get("self_assessment"))
            state = AssessmentState.IN_REVIEW if own else AssessmentState.PUBLISHED
            assessment_id = await repository.add_assessment(
                session, case["region"], framework.id, case["period"], state
            )
            if assessment_id is None:
                continue  # there already: never changed
            created.append(assessment_id)
            await repository.add_inputs(session, _input_rows(framework, assessment_id, case))
            audit.record(
                session,
                context,
                action="demo.load",
                entity="assessment",
                entity_id=str(assessment_id),
                after={
                    "region": case["region"],
                    "framework": framework.id,
                    "period": case["period"],
                    "state": state,
                    "values": {node: str(value) for node, value in case["values"].items()},
                },
            )
        for point in document["metrics"]:
            year = await repository.add_metric(session, point)
            if year is None:
                continue
            audit.record(
                session,
                context,
                action="metric.create",  # as a push records it: per series
                entity="metric_series",
                entity_id=f"{point['region']}/{point['metric']}",
                after={"created": {str(point["period"]): str(point["value"])}},
            )
            # The metric-driven assessments of the region and year, as a push would mark them.
            await mark_affected(session, [Change(point["region"], year, point["metric"])], None)
        await mark_dirty(session, created, None)
    return await settle(runtime)


def _input_rows(
    framework: Framework, assessment_id: uuid.UUID, case: dict[str, Any]
) -> list[dict[str, Any]]:
    """A case's values as input rows: a leaf's as verified (and self-assessed) values, or as
    the region's own only in a self-assessment; an inner node's as the official result its
    results letter published. ``self_values`` holds the region's own values where they differ
    from the verified ones."""
    leaves = {node.id for node in framework.nodes() if node.is_leaf}
    own = {node_id: str(value) for node_id, value in case.get("self_values", {}).items()}
    if unknown := sorted(set(own) - (leaves & set(case["values"]))):
        raise ValueError(f"{case['note']}: self_values for {', '.join(unknown)} without a value")
    rows = []
    for node_id, value in case["values"].items():
        text = str(value)
        if node_id in leaves and case.get("self_assessment"):
            given = {"self_value": text}
        elif node_id in leaves:
            given = {"self_value": own.get(node_id, text), "verified_value": text}
        else:
            given = {"official_value": text, "official_source": f"seed case: {case['note']}"}
        rows.append({"assessment_id": assessment_id, "node_id": node_id, **given})
    return rows


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
