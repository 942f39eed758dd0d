"""An inner node's value and its children's contributions come from one pass over its children
(``Rule.explain``): exactly the numbers that ``combine`` and ``contribute``, each on its own,
give. Checked on the rule table and on whole evaluations of every framework file."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from services.scoring.engine import InputError, Inputs, evaluate
from services.scoring.engine.aggregations import RULES, Present
from services.scoring.engine.evaluate import exact_values
from services.scoring.engine.model import Node
from services.scoring.engine.numbers import round_exact
from services.scoring.engine.result import NodeResult, node_result
from services.scoring.frameworks import get_framework
from tests.scoring.test_index_alone import FRAMEWORKS, framework_inputs

fractions = st.fractions(min_value=0, max_value=100, max_denominator=1000)


@st.composite
def children(draw: st.DrawFn) -> tuple[Node, list[Present]]:
    count = draw(st.integers(min_value=1, max_value=8))
    nodes = [
        Node(
            id=f"c{n}",
            name=f"c{n}",
            path=f"c{n}",
            weight=draw(fractions),
            scale=None,
            required=False,
        )
        for n in range(count)
    ]
    parent = Node(
        id="p",
        name="p",
        path="p",
        weight=Fraction(1),
        scale=None,
        required=False,
        children=tuple(nodes),
        aggregation="weighted_mean",
    )
    return parent, [Present(node, draw(fractions), ()) for node in nodes]


@settings(max_examples=300)
@given(children())
def test_a_rules_one_pass_gives_its_combine_and_contribute(
    case: tuple[Node, list[Present]],
) -> None:
    parent, present = case
    for name, rule in RULES.items():
        if rule.explain is None:
            continue
        assert rule.contribute is not None, name
        assert rule.explain(parent, present) == (
            rule.combine(parent, present),
            rule.contribute(parent, present),
        )


def separately(framework_id: str, inputs: Inputs) -> dict[str, tuple[Any, Any]]:
    """Each node's rounded value and contribution, the contribution worked out as before the
    one-pass rules: ``contribute`` on the children that have a value, for every inner node
    with a value."""
    framework = get_framework(framework_id)
    values = exact_values(framework, inputs)
    places, mode = framework.contribution_precision, framework.rounding
    shares: dict[str, Fraction | None] = {}
    for node in framework.all_nodes:
        rule = RULES.get(node.aggregation or "none")
        if node.is_leaf or values[node.id] is None or rule is None or rule.contribute is None:
            continue
        with_value = [child for child in node.children if values[child.id] is not None]
        present = [Present(child, values[child.id], ()) for child in with_value]  # type: ignore[arg-type]
        if node.aggregation == "pooled_mean":
            continue  # no contributions (and items would be needed)
        shares.update(zip((c.id for c in with_value), rule.contribute(node, present), strict=True))
    return {
        node.id: (
            values[node.id],
            None if shares.get(node.id) is None else round_exact(shares[node.id], places, mode),  # type: ignore[arg-type]
        )
        for node in framework.all_nodes
    }


@settings(max_examples=400)
@given(framework_inputs())
def test_contributions_in_one_pass_are_those_worked_out_separately(
    case: tuple[str, Inputs],
) -> None:
    framework_id, inputs = case
    try:
        result = evaluate(get_framework(framework_id), inputs)
    except InputError:
        return
    expected = separately(framework_id, inputs)
    assert {node_id: node.contribution for node_id, node in result.nodes.items()} == {
        node_id: contribution for node_id, (_, contribution) in expected.items()
    }


def test_the_comparison_above_sees_contributions_on_every_framework() -> None:
    # Not only refusals: on each framework the strategy gives results with contributions.
    # (hypothesis.find raises NoSuchExample if it finds none.)
    def contributed(case: tuple[str, Inputs]) -> bool:
        try:
            result = evaluate(get_framework(case[0]), case[1])
        except InputError:
            return False
        return any(node.contribution is not None for node in result.nodes.values())

    for framework_id in FRAMEWORKS:
        found = find(
            framework_inputs(), lambda case, f=framework_id: case[0] == f and contributed(case)
        )
        assert found[0] == framework_id


def test_a_node_result_built_directly_is_the_dataclasss() -> None:
    # The engine fills a NodeResult's slots without its __init__: every field, in its place.
    given = {field.name: f"value of {field.name}" for field in fields(NodeResult)}
    built = node_result(**given)  # type: ignore[arg-type]
    assert built == NodeResult(**given)  # type: ignore[arg-type]
    assert {name: getattr(built, name) for name in given} == given
    with pytest.raises(FrozenInstanceError):
        built.value = None  # type: ignore[misc]
