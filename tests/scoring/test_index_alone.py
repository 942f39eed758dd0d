"""The shortcuts a recompute takes for the indices stored beside the explained one (from
self-assessed or verified values only) give exactly what a full evaluation gives."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import find, given, settings
from hypothesis import strategies as st

from services.scoring.engine import InputError, Inputs, evaluate, evaluate_index
from services.scoring.frameworks import get_framework
from services.scoring.service import index_alone

FRAMEWORKS = ("gmsc-2023", "spbe-2020", "ipd-2026", "smartcity-spbe-linked")

# Values a region or an assessor may enter, some of them off a node's scale or not numbers at
# all (the engine refuses those), on leaves and inner nodes alike.
entered = st.one_of(
    st.integers(min_value=-1, max_value=6),
    st.decimals(min_value=0, max_value=5, places=2).map(str),
    st.decimals(min_value=0, max_value=100, places=2),
    st.sampled_from([True, "x", "4.999", "1"]),
)


@st.composite
def framework_inputs(draw: st.DrawFn) -> tuple[str, Inputs]:
    framework_id = draw(st.sampled_from(FRAMEWORKS))
    framework = get_framework(framework_id)
    ids = [node.id for node in framework.nodes()]
    values: dict[str, Any] = {}
    if draw(st.booleans()):  # every entered leaf of the index on its scale: an index to compare
        for leaf in framework.index.walk():
            if leaf.is_leaf and leaf.input in ("assessed", "outside") and leaf.scale is not None:
                low, high = int(leaf.scale.min), int(leaf.scale.max)
                values[leaf.id] = (
                    draw(st.integers(min_value=low, max_value=high))
                    if leaf.scale.integer
                    else str(draw(st.decimals(min_value=low, max_value=high, places=2)))
                )
    values |= draw(st.dictionaries(st.sampled_from(ids), entered, max_size=len(ids) // 4))
    linked = {
        link.ref: draw(st.decimals(min_value=0, max_value=5, places=2))
        for link in framework.links
        if draw(st.booleans())
    }
    metrics = {
        key: draw(st.decimals(min_value=0, max_value=200, places=1))
        for key in framework.metric_keys
        if draw(st.booleans())
    }
    return framework_id, Inputs(values=values, linked=linked, metrics=metrics)


def full(framework_id: str, inputs: Inputs) -> tuple[Any, Any]:
    try:
        index = evaluate(get_framework(framework_id), inputs).index
    except InputError as exc:
        return "refused", str(exc)
    return index.value, index.predicate


@settings(max_examples=400)
@given(framework_inputs())
def test_the_index_alone_is_the_full_evaluations_index(case: tuple[str, Inputs]) -> None:
    framework_id, inputs = case
    try:
        shortcut: tuple[Any, Any] = evaluate_index(get_framework(framework_id), inputs)
    except InputError as exc:
        shortcut = ("refused", str(exc))
    assert shortcut == full(framework_id, inputs)


def test_the_comparison_above_sees_indices() -> None:
    # Not only refusals and missing values: the strategy gives complete indices too.
    # (hypothesis.find raises NoSuchExample if it finds none.)
    found = find(framework_inputs(), lambda case: isinstance(full(*case)[0], Decimal))
    assert isinstance(full(*found)[0], Decimal)


@settings(max_examples=100)
@given(st.lists(framework_inputs(), min_size=1, max_size=12))
def test_a_batchs_memo_never_gives_one_inputs_index_to_another(
    cases: list[tuple[str, Inputs]],
) -> None:
    memo: dict[Any, Any] = {}
    for framework_id, inputs in cases + cases:  # the second time, from the memo
        framework = get_framework(framework_id)
        expected = full(framework_id, inputs)
        if expected[0] == "refused":
            expected = (None, None)
        assert index_alone(framework, inputs, memo) == expected


def test_equal_but_different_values_are_not_one_memo_entry() -> None:
    # 1 == True == Decimal(1) in Python, but True is not a number to the engine.
    framework = get_framework("gmsc-2023")
    memo: dict[Any, Any] = {}
    components = ("output", "outcome", "impact", "quickwin")
    given_one = Inputs(values={"baseline": 1, **dict.fromkeys(components, 1)})
    given_true = Inputs(values={"baseline": True, **dict.fromkeys(components, 1)})
    given_decimal = Inputs(values={"baseline": Decimal(1), **dict.fromkeys(components, 1)})
    assert index_alone(framework, given_one, memo) == (Decimal("1.00"), None)
    assert index_alone(framework, given_true, memo) == (None, None)
    assert index_alone(framework, given_decimal, memo) == (Decimal("1.00"), None)
