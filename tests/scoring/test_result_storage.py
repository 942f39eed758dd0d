"""Result rows are written by COPY in text format: what is stored must be what was computed,
whatever characters a node's texts hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, ResultNode
from services.scoring import repository


async def test_result_rows_round_trip_through_copy_with_awkward_text(
    session: AsyncSession,
) -> None:
    assessment = Assessment(region_code="32.71", framework_id="spbe-2020", period=2024)
    session.add(assessment)
    await session.flush()
    note = 'tab\there, line\nbreak, back\\slash, "quoted", Rp 1.000 — ✓'
    detail = json.dumps({"inputs": ["I1"], "missing": [], "note": note, "value_from": "self"})
    computed_at = datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    rows: list[repository.ResultRow] = [
        (
            assessment.id,
            "spbe",
            None,
            Decimal("3.13"),
            Decimal("100"),
            None,
            "Baik",
            "computed",
            detail,
            7,
        ),
        (
            assessment.id,
            "I1",
            "A1\\x",
            None,
            Decimal("1.3"),
            Decimal("-0.0100"),
            "Sangat\tBaik",
            "missing",
            "{}",
            7,
        ),
    ]
    state = {
        "assessment_id": assessment.id,
        "input_revision": 7,
        "framework_hash": "h",
        "index_value": Decimal("3.13"),
        "predicate": "Baik",
        "complete": True,
        "computed_at": computed_at,
        "error": None,
    }
    text = repository.ResultText(computed_at)
    for row in rows:
        text.add(row)
    await repository.replace_results(session, [assessment.id], text, [state])

    stored = {
        node.node_id: node
        for node in await session.scalars(
            select(ResultNode).where(ResultNode.assessment_id == assessment.id)
        )
    }
    index, leaf = stored["spbe"], stored["I1"]
    assert (index.parent_id, index.value, index.weight, index.contribution) == (
        None,
        Decimal("3.13"),
        Decimal("100"),
        None,
    )
    assert index.detail["note"] == note
    assert (index.predicate, index.source, index.input_revision) == ("Baik", "computed", 7)
    assert index.computed_at == computed_at
    assert (leaf.parent_id, leaf.value, leaf.contribution) == ("A1\\x", None, Decimal("-0.0100"))
    assert (leaf.predicate, leaf.detail) == ("Sangat\tBaik", {})


async def test_entered_values_on_the_driver_match_the_assessment_repository(
    session: AsyncSession,
) -> None:
    """The recompute reads entered values on asyncpg, decoding each JSON text once: the same
    values, of the same types, as the assessment repository's read."""
    from services.domain.assessment import repository as assessments
    from services.models import AssessmentInput

    first = Assessment(region_code="32.71", framework_id="spbe-2020", period=2024)
    second = Assessment(region_code="32.75", framework_id="spbe-2020", period=2024)
    empty = Assessment(region_code="32.16", framework_id="spbe-2020", period=2024)
    session.add_all([first, second, empty])
    await session.flush()
    given = [
        (first.id, "I1", "3", "4", None),
        (first.id, "I2", 3, None, None),
        (first.id, "I3", "3.45", "3.45", None),
        (first.id, "I4", [1, "2", "2.5"], [1, 2], None),
        (first.id, "spbe", None, None, "3.13"),
        (second.id, "I1", "3", "3", None),
        (second.id, "I2", True, None, None),
        (second.id, "I3", {"odd": "1"}, "", None),
        (second.id, "I4", None, None, None),
    ]
    for assessment_id, node_id, own, verified, official in given:
        session.add(
            AssessmentInput(
                assessment_id=assessment_id,
                node_id=node_id,
                self_value=own,
                verified_value=verified,
                official_value=official,
            )
        )
    await session.flush()
    ids = [first.id, second.id, empty.id]
    expected = await assessments.entered_values(session, ids)
    found = await repository.entered_values(session, ids)
    assert found == expected
    assert {
        (i, node, kind, type(value))
        for i, nodes in found.items()
        for node, values in nodes.items()
        for kind, value in values.items()
    } == {
        (i, node, kind, type(value))
        for i, nodes in expected.items()
        for node, values in nodes.items()
        for kind, value in values.items()
    }
    assert found[first.id]["I4"]["self"] is not found[first.id]["I4"]["verified"]
    assert await repository.entered_values(session, []) == {}


def test_result_lines_are_the_result_rows_as_copy_text() -> None:
    """The recompute writes each result's COPY lines straight from the result, formatting what
    repeats once a batch: the same text as its rows, one by one, on every framework, with
    results that differ in values, contributions, predicates, missing inputs and notes."""
    import random
    import uuid

    from services.domain.assessment.states import Value
    from services.scoring.engine import Inputs, evaluate
    from services.scoring.frameworks import registry
    from services.scoring.service import add_result_lines, result_rows

    rng = random.Random(19)
    computed_at = datetime(2026, 12, 1, 19, 40, tzinfo=UTC)
    fast, reference = repository.ResultText(computed_at), repository.ResultText(computed_at)
    details: dict[tuple[object, ...], str] = {}
    heads: dict[str, dict[str, tuple[str, str]]] = {}
    for framework in registry().values():
        leaves = [n for n in framework.nodes() if n.is_leaf and n.input in ("assessed", "outside")]
        for revision in range(30):
            values: dict[str, object] = {}
            origins: dict[str, Value] = {}
            for leaf in leaves:
                if rng.random() < 0.15 or leaf.scale is None:
                    continue  # missing
                low, high = int(leaf.scale.min), int(leaf.scale.max)
                values[leaf.id] = (
                    [str(rng.randint(low, high)) for _ in range(rng.randint(1, 3))]
                    if leaf.items
                    else str(rng.randint(low, high))
                )
                origins[leaf.id] = rng.choice([Value.SELF, Value.VERIFIED])
            result = evaluate(framework, Inputs(values=values))
            identifier = uuid.UUID(int=rng.getrandbits(128))
            add_result_lines(fast, result, identifier, revision, origins, details, heads)
            for row in result_rows(result, identifier, revision, origins):
                reference.add(row)
    assert fast.lines == reference.lines
    assert fast.text() == reference.text()
