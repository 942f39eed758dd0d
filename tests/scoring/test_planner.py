"""The gap-to-target planner: optimal against brute force, and hand-checked official cases."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.engine import (
    InputError,
    Inputs,
    PlanError,
    compile_framework,
    evaluate,
    plan,
)
from services.scoring.frameworks import get_framework

# A Kota Bekasi-style SPBE 2020 assessment published at 3.83 ("Sangat Baik"): every indicator at
# level 4 but the two of A4 (I19, I20, weight 2.50) and the eight of A5 (I21–I28, weight 1.50) at
# 3. Σ weight × level = 400 − 2 × 2.50 − 8 × 1.50 = 383, so the index is 3.83.
BEKASI = (
    {f"I{n}": 4 for n in range(1, 48)} | {"I19": 3, "I20": 3} | {f"I{n}": 3 for n in range(21, 29)}
)
A7 = {f"I{n}" for n in range(32, 42)}  # weight 2.75 each
A8 = {f"I{n}" for n in range(42, 48)}  # weight 3.00 each


def test_bekasi_to_memuaskan_takes_thirteen_steps() -> None:
    # "Memuaskan" is a published index of at least 4.20, i.e. an exact index of at least 4.195
    # (half-up to 2 decimals): Σ weight × level ≥ 419.5, a gain of 36.5 over 383.
    # One step adds its indicator's weight: 3.00 (A8, six indicators at 4, one step each),
    # 2.75 (A7, ten at 4), 2.50 (I11–I18 at 4, one step; I19/I20 at 3, two), 1.50, 1.30.
    # Twelve steps gain at most 6 × 3.00 + 6 × 2.75 = 34.5 < 36.5; thirteen reach
    # 6 × 3.00 + 7 × 2.75 = 37.25 ≥ 36.5. So the fewest steps is 13, and the plan that reaches
    # the highest index with 13 is that one: 383 + 37.25 = 420.25 → 4.2025 → published 4.20.
    framework = get_framework("spbe-2020")
    assert evaluate(framework, Inputs(values=BEKASI)).index.value == Decimal("3.83")
    result = plan(framework, Inputs(values=BEKASI), "Memuaskan")
    assert result.reachable
    assert result.best.cost == 13
    assert (result.best.index, result.best.predicate) == (Decimal("4.20"), "Memuaskan")
    assert (result.current_index, result.current_predicate) == (Decimal("3.83"), "Sangat Baik")
    raised = {step.node for step in result.best.steps}
    assert raised >= A8
    assert len(raised & A7) == 7
    assert len(raised) == 13
    assert all(step.after - step.before == 1 for step in result.best.steps)
    document = result.to_dict()
    assert document["cost"] == "13"
    assert document["target_index"] == "4.20"
    i47 = next(step for step in document["steps"] if step["node"] == "I47")
    assert i47 == {
        "node": "I47",
        "name": "Layanan Publik Sektor 3",
        "from": "4",
        "to": "5",
        "steps": 1,
        "cost": "1",
        "contribution": "0.0300",
    }
    # Other thirteen-step plans exist (6 × 3.00 + 6 × 2.75 + 2.50 = 37 ≥ 36.5, among others).
    assert 1 <= len(result.alternatives) <= 4
    for option in result.alternatives:
        assert option.cost == 13
        assert option.predicate == "Memuaskan"
        assert sorted(s.node for s in option.steps) != sorted(raised)


def test_a_target_value_is_judged_on_the_published_index() -> None:
    # 3.85 published needs Σ ≥ 384.5: a gain of 1.5, one step of weight 1.50 (I21–I31) or
    # more. One step of 1.50 gives 384.5 → 3.845 → 3.85; the highest one-step gain is 3.00
    # (an A8 indicator), 386 → 3.86.
    result = plan(get_framework("spbe-2020"), Inputs(values=BEKASI), "3.85")
    assert result.best.cost == 1
    assert result.best.index == Decimal("3.86")
    assert result.best.steps[0].node in A8


def test_costs_change_the_plan() -> None:
    # A8 indicators now take 3 days a step; every other step 1. Thirteen one-day steps gain at
    # most 10 × 2.75 (all of A7) + 3 × 2.50 = 35 < 36.5; fourteen gain 27.5 + 4 × 2.50 = 37.5,
    # cost 14. Any plan with an A8 step costs at least 3 + 12 = 15 (12 one-day steps gain at
    # most 27.5 + 2 × 2.50 = 32.5, + 3.00 = 35.5 < 36.5 anyway). So 14 days, no A8 step;
    # 383 + 37.5 = 420.5 → 4.205 → 4.21.
    costs = dict.fromkeys(sorted(A8), 3)
    result = plan(get_framework("spbe-2020"), Inputs(values=BEKASI), "Memuaskan", costs=costs)
    assert result.best.cost == 14
    raised = {step.node for step in result.best.steps}
    assert not raised & A8
    assert raised >= A7
    assert result.best.index == Decimal("4.21")
    without = plan(get_framework("spbe-2020"), Inputs(values=BEKASI), "Memuaskan")
    assert {step.node for step in without.best.steps} & A8


def test_a_target_met_already_costs_nothing() -> None:
    result = plan(get_framework("spbe-2020"), Inputs(values=BEKASI), "Baik")
    assert result.reachable
    assert result.best.cost == 0
    assert result.best.steps == ()
    assert result.best.index == Decimal("3.83")
    assert result.alternatives == ()


def test_an_unreachable_target_gives_the_best_reachable_index() -> None:
    # IPD 2026 with nothing entered: the four outside-index indicators (I5, I6, I7, I18, weight
    # 14 together) are set by other agencies and count 1 while absent; every other one can go
    # to 5.00 at best: (86 × 5 + 14 × 1) ÷ 100 = 4.44 < 4.50.
    result = plan(get_framework("ipd-2026"), Inputs(), "4.50")
    assert not result.reachable
    assert result.best.index == Decimal("4.44")
    assert {note.node for note in result.excluded} == {"I5", "I6", "I7", "I18"}
    assert len(result.assumed) == 16  # every assessed indicator counted from 1.00
    assert all(step.after == 5 for step in result.best.steps)
    assert result.to_dict()["reachable"] is False


def test_ipd_decimal_increments() -> None:
    # IPD at 2.00 on every assessed indicator, outside ones absent (1): Σ weight × value =
    # 86 × 2 + 14 = 186 → 1.86. "Baik" needs 2.50 published, an exact 2.495: Σ ≥ 249.5, a gain
    # of 63.5. A 0.01 step adds 0.01 × weight: 0.15 on I20 (weight 15), 0.10 on I19 (10), less
    # elsewhere. Fewest steps: I20 2.00 → 5.00 (300 steps, 45) then I19 by 185 steps (18.5):
    # 485 steps, to exactly 249.5 → 2.495 → 2.50.
    values = {f"I{n}": "2.00" for n in range(1, 21) if n not in (5, 6, 7, 18)}
    framework = get_framework("ipd-2026")
    result = plan(framework, Inputs(values=values), "Baik")
    assert result.best.cost == 485
    steps = {step.node: (step.before, step.after) for step in result.best.steps}
    assert steps == {"I19": (2, Fraction("3.85")), "I20": (2, 5)}
    assert (result.best.index, result.best.predicate) == (Decimal("2.50"), "Baik")
    document = result.to_dict()
    assert document["increment"] == "0.01"
    assert [(s["node"], s["from"], s["to"]) for s in document["steps"]] == [
        ("I19", "2.00", "3.85"),
        ("I20", "2.00", "5.00"),
    ]
    # Steps of 0.05: 60 on I20 and 37 on I19, the same values.
    coarse = plan(framework, Inputs(values=values), "Baik", increment="0.05")
    assert coarse.best.cost == 97
    assert {s.node: s.after for s in coarse.best.steps} == {"I19": Fraction("3.85"), "I20": 5}


def test_a_step_stops_at_the_scale_maximum() -> None:
    # I20 at 4.99 with steps of 0.25: one short step to 5.00 (a gain of 0.15 × 1), not past it.
    values = {f"I{n}": "1.00" for n in range(1, 21) if n not in (5, 6, 7, 18)} | {"I20": "4.99"}
    result = plan(get_framework("ipd-2026"), Inputs(values=values), "5.00", increment="0.25")
    assert not result.reachable
    i20 = next(step for step in result.best.steps if step.node == "I20")
    assert (i20.after, i20.count) == (5, 1)


def test_refusals_name_the_problem() -> None:
    spbe = get_framework("spbe-2020")
    with pytest.raises(InputError, match="neither a predicate"):
        plan(spbe, Inputs(values=BEKASI), "Istimewa")
    with pytest.raises(InputError, match="off the index scale"):
        plan(spbe, Inputs(values=BEKASI), "5.5")
    with pytest.raises(InputError, match="costs: unknown node"):
        plan(spbe, Inputs(values=BEKASI), "4.00", costs={"I99": 1})
    with pytest.raises(InputError, match="costs: I1: cost 0 is not positive"):
        plan(spbe, Inputs(values=BEKASI), "4.00", costs={"I1": 0})
    with pytest.raises(InputError, match="costs: I5 is not an assessed leaf"):
        plan(get_framework("ipd-2026"), Inputs(), "3.00", costs={"I5": 1})
    with pytest.raises(InputError, match="increment"):
        plan(get_framework("ipd-2026"), Inputs(), "3.00", increment="0")
    with pytest.raises(PlanError, match="spbe: a value is given for this node"):
        plan(spbe, Inputs(values={"spbe": "3.83"}), "4.00")
    with pytest.raises(PlanError, match="no assessed leaf"):
        plan(
            get_framework("smartcity-spbe-linked"),
            Inputs(linked={"gmsc-2023/final": "3", "spbe-2020/spbe": "3"}, metrics=METRICS),
            "90",
        )
    lowest = compile_framework(
        """
id: lowest
version: "1"
name: Lowest
index:
  id: total
  name: Total
  aggregation: weighted_mean
  children:
    - id: worst
      name: Worst
      aggregation: min
      children:
        - {id: a, name: A, scale: {min: 1, max: 3, integer: true}}
        - {id: b, name: B, scale: {min: 1, max: 3, integer: true}}
    - {id: c, name: C, scale: {min: 1, max: 3, integer: true}}
"""
    )
    with pytest.raises(PlanError, match="total/worst: aggregation 'min' is not linear"):
        plan(lowest, Inputs(values={"a": 1, "b": 2, "c": 1}), "2")


METRICS = {"integrated_apps": 148, "integrated_apps_target": 327}


# -- optimality against brute force ---------------------------------------------------------


def small_framework(
    aggregations: list[str], weights: list[int], integer: list[bool], rounding: str
) -> str:
    """A two-level framework: a weighted_mean root over two groups of two leaves each."""
    leaves = []
    for n, (weight, whole) in enumerate(zip(weights, integer, strict=True)):
        scale = "{min: 1, max: 4, integer: true}" if whole else "{min: 0, max: 1}"
        leaves.append(f"{{id: l{n}, name: L{n}, weight: {weight}, scale: {scale}}}")
    groups = []
    for g, aggregation in enumerate(aggregations):
        children = "\n".join(f"        - {leaf}" for leaf in leaves[2 * g : 2 * g + 2])
        groups.append(
            f"    - id: g{g}\n      name: G{g}\n      weight: {g + 1}\n"
            f"      aggregation: {aggregation}\n      children:\n{children}"
        )
    return (
        f'id: small\nname: Small\nversion: "1"\nprecision: 2\nrounding: {rounding}\n'
        "index:\n  id: total\n  name: Total\n  aggregation: weighted_mean\n  children:\n"
        + "\n".join(groups)
        + "\n"
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, str], str]:
    aggregations = draw(
        st.lists(st.sampled_from(["weighted_mean", "mean", "sum"]), min_size=2, max_size=2)
    )
    weights = draw(st.lists(st.integers(1, 5), min_size=4, max_size=4))
    integer = draw(st.lists(st.booleans(), min_size=4, max_size=4))
    rounding = draw(st.sampled_from(["half_up", "half_even", "half_down", "down", "up"]))
    values = {}
    for n, whole in enumerate(integer):
        values[f"l{n}"] = (
            str(draw(st.integers(1, 4))) if whole else draw(st.sampled_from(["0", "0.3", "0.9"]))
        )
    costs = {
        f"l{n}": draw(st.sampled_from(["1", "2", "0.5", "3"]))
        for n in range(4)
        if draw(st.booleans())
    }
    text = small_framework(aggregations, weights, integer, rounding)
    # Mostly above the current index (a plan with steps), sometimes out of reach or met already.
    current = evaluate(compile_framework(text), Inputs(values=values)).index.value
    assert current is not None
    target = current + draw(
        st.decimals(min_value=Decimal("-0.2"), max_value=Decimal("1.5"), places=2)
    )
    return text, values, costs, str(max(target, Decimal(0)))


def brute_force(
    text: str, values: dict[str, str], costs: dict[str, str], target: str, increment: Fraction
) -> tuple[Fraction | None, set[Decimal], Decimal | None]:
    """(least cost reaching the target or None, the published indices of the cheapest plans,
    the best index reachable at all), by scoring every combination of steps with the engine."""
    framework = compile_framework(text)
    choices = []
    for node_id, raw in values.items():
        scale = framework.node(node_id).scale
        assert scale is not None
        step = Fraction(1) if scale.integer else increment
        start, options = Fraction(raw), []
        value = start
        steps = 0
        while True:
            options.append((value, steps))
            if value >= scale.max:
                break
            value, steps = min(value + step, scale.max), steps + 1
        choices.append([(node_id, v, s) for v, s in options])
    least: Fraction | None = None
    indices: dict[Fraction, set[Decimal]] = {}
    best: Decimal | None = None
    for combination in itertools.product(*choices):
        chosen = {
            node_id: str(Decimal(v.numerator) / Decimal(v.denominator))
            for node_id, v, _ in combination
        }
        index = evaluate(framework, Inputs(values=chosen)).index.value
        assert index is not None
        best = index if best is None else max(best, index)
        cost = sum(
            (Fraction(costs.get(node_id, "1")) * s for node_id, _, s in combination), Fraction(0)
        )
        if index >= Decimal(target):
            indices.setdefault(cost, set()).add(index)
            least = cost if least is None else min(least, cost)
    return least, indices.get(least, set()) if least is not None else set(), best


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["0.25", "0.3", "0.5"]))
def test_the_plan_is_as_cheap_as_brute_force(
    case: tuple[str, dict[str, str], dict[str, str], str], increment: str
) -> None:
    text, values, costs, target = case
    framework = compile_framework(text)
    result = plan(framework, Inputs(values=values), target, costs=costs, increment=increment)
    least, cheapest, best = brute_force(text, values, costs, target, Fraction(increment))
    assert result.reachable == (least is not None)
    if least is None:
        assert result.best.index == best
        return
    assert result.best.cost == least
    # Of the cheapest plans, the one reaching the highest index.
    assert result.best.index == max(cheapest)
    for option in (result.best, *result.alternatives):
        assert option.cost == least
        assert option.index is not None
        assert option.index >= Decimal(target)
        check = dict(values) | {step.node: str(step.after) for step in option.steps}
        scored = evaluate(framework, Inputs(values=_decimal_values(check))).index.value
        assert scored == option.index
    shapes = [
        tuple((s.node, s.count) for s in o.steps) for o in (result.best, *result.alternatives)
    ]
    assert len(set(shapes)) == len(shapes)


def _decimal_values(values: dict[str, str]) -> dict[str, str]:
    """Values as decimal text (a Fraction's str is "3/10")."""
    out = {}
    for node_id, raw in values.items():
        value = Fraction(raw)
        out[node_id] = str(Decimal(value.numerator) / Decimal(value.denominator))
    return out
