"""Gap to target: the cheapest improvements of a region's own inputs that lift an index to a target.

Given a framework, the inputs it evaluates and a target (an index value such as 3.50, or a
predicate such as "Memuaskan"), :func:`plan` finds the cheapest set of steps that reaches it. A
step raises one assessed leaf by one level (integer scales) or by ``increment`` (decimal scales,
default one unit of the framework's precision: 0.01 for IPD values), never above its scale's
maximum; each step costs 1 unless the caller gives a cost per leaf (effort in days, say).

The answer is exact, not a heuristic. For a tree of ``weighted_mean``, ``mean`` and ``sum`` nodes
the unrounded index is linear in the leaves (index = current + Σ coefficient × raise), so the
problem is a bounded knapsack: choose how many steps to take on each leaf so that the gain covers
what the target needs, at the least cost. It is solved by dynamic programming over the cost (whole
numbers after scaling), keeping for each budget the largest exact gain (whole numbers after
scaling by the common denominator of the gains); a leaf's steps all add the same gain, so each
leaf is folded in with a sliding-window maximum in time proportional to the budget. Among the
cheapest plans the one reaching the highest index is returned, with a few others of the same cost.

The target is judged as the framework judges the index: rounded by the file's precision and
rounding mode, a predicate read off that published value (a band's lower edge inclusive; a
predicate target is met by its band or any band above it).

Only ``assessed`` leaves of the index tree are improved. Leaves scored from outside indices (IPD
I5, set by other agencies), metric-driven and linked leaves keep their value and are listed as
excluded. A required assessed leaf with no value counts from its scale's minimum (listed as
assumed); an optional one without a value stays out, as the engine leaves it out. Aggregations
that are not linear in their leaves (``min``, ``max``, ``ratio``, ``pooled_mean``) and leaves
taking a list of items are refused, naming the node, when a leaf the plan could raise is below
them; a subtree with nothing to raise is a constant whatever its aggregation.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.scoring.engine.errors import InputError
from services.scoring.engine.evaluate import Inputs, evaluate, exact_values
from services.scoring.engine.model import Framework, Node
from services.scoring.engine.numbers import NotANumber, exact, plain, round_exact, rounded_units

LINEAR = frozenset({"weighted_mean", "mean", "sum"})
MAX_ALTERNATIVES = 10
# Cells of the cost table (leaves × budgets) beyond which a plan is refused rather than computed:
# reached only with a very fine increment or costs of many decimals (an SPBE plan needs a few
# thousand cells, an IPD plan at 0.01 a few hundred thousand).
MAX_CELLS = 20_000_000


class PlanError(ValueError):
    """A plan cannot be made for these inputs on this framework (the message says why, naming
    the node where there is one)."""

    def __init__(self, problem: str, node: str | None = None) -> None:
        self.problem = problem
        self.node = node
        super().__init__(problem)


@dataclass(frozen=True, slots=True)
class Target:
    """What the caller asked for (``text``) and the lowest published index that meets it."""

    text: str
    units: int  # the lowest published value of the index that meets it, in 10^-places
    places: int
    predicate: str | None  # when the target was given as a predicate

    @property
    def threshold(self) -> Decimal:
        return Decimal(self.units).scaleb(-self.places)


@dataclass(frozen=True, slots=True)
class Step:
    """One leaf raised ``count`` steps, from ``before`` to ``after``; ``contribution`` is what
    that adds to the unrounded index."""

    node: str
    name: str
    before: Fraction
    after: Fraction
    count: int
    cost: Fraction
    contribution: Fraction


@dataclass(frozen=True, slots=True)
class Option:
    """A set of steps, what it costs, and the published index and predicate it leads to."""

    cost: Fraction
    index: Decimal | None
    predicate: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """A leaf the plan treats specially: assumed at a value, or excluded, and why."""

    node: str
    reason: str
    value: Fraction | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The answer of :func:`plan`. ``best`` is the cheapest plan reaching the target (when it is
    unreachable: every leaf raised to its maximum, the best index there is); ``alternatives``
    other plans of the same cost that also reach it."""

    framework: Framework
    target: Target
    reachable: bool
    current_index: Decimal | None
    current_predicate: str | None
    best: Option
    alternatives: tuple[Option, ...]
    increment: Fraction | None  # the step of decimal-scale leaves, None when none is in play
    assumed: tuple[Note, ...]
    excluded: tuple[Note, ...]

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON carries it: decimals as decimal text, never floats."""
        framework = self.framework
        return {
            "framework": framework.id,
            "target": self.target.text,
            "target_index": format(self.target.threshold, "f"),
            "reachable": self.reachable,
            "current": {
                "index": _text(self.current_index),
                "predicate": self.current_predicate,
            },
            **_option_dict(framework, self.best),
            "alternatives": [_option_dict(framework, option) for option in self.alternatives],
            "increment": None if self.increment is None else _decimal(self.increment),
            "assumed": [
                {"node": note.node, "value": _leaf_value(framework, note), "note": note.reason}
                for note in self.assumed
            ],
            "excluded": [{"node": note.node, "reason": note.reason} for note in self.excluded],
        }


@dataclass(frozen=True, slots=True)
class _Unit:
    """A leaf the plan may raise: its coefficient in the index and its steps."""

    node: Node
    coefficient: Fraction  # d index / d value
    start: Fraction
    top: Fraction
    step: Fraction
    cost: Fraction

    @property
    def count(self) -> int:
        """Steps available: the last one may be short, stopping at the scale's maximum."""
        return max(0, math.ceil((self.top - self.start) / self.step))

    def value_after(self, steps: int) -> Fraction:
        return min(self.start + steps * self.step, self.top)


def parse_target(framework: Framework, raw: object) -> Target:
    """``raw`` as a target for ``framework``'s index: a predicate of the index (by name, any
    case) or an index value on its scale. Raises :class:`InputError` otherwise."""
    root = framework.index
    places = _places(framework)
    text = str(raw).strip()
    for band in root.predicates:
        if band.predicate is not None and band.predicate.casefold() == text.casefold():
            units = math.ceil(band.lower * 10**places)
            return Target(band.predicate, units, places, band.predicate)
    try:
        value = exact(raw if not isinstance(raw, str) else text)
    except NotANumber:
        known = [band.predicate for band in root.predicates if band.predicate]
        problem = (
            f"target {text!r} is neither a predicate ({', '.join(known)}) nor an index value "
            f"of {framework.id}"
            if known
            else f"target {text!r} is not an index value of {framework.id} (its index has no "
            "predicates)"
        )
        raise InputError(problem, root.id) from None
    if root.scale is not None and not root.scale.min <= value <= root.scale.max:
        raise InputError(
            f"target {text} is off the index scale {root.scale.describe()} of {framework.id}",
            root.id,
        )
    return Target(text, math.ceil(value * 10**places), places, None)


def plan(
    framework: Framework,
    inputs: Inputs,
    target: object,
    *,
    costs: Mapping[str, Any] | None = None,
    increment: object | None = None,
    alternatives: int = 4,
    max_cells: int = MAX_CELLS,
) -> Plan:
    """The cheapest steps on ``inputs``' assessed leaves that bring ``framework``'s index to
    ``target`` (a predicate or an index value, see :func:`parse_target`).

    ``costs`` maps a leaf id to the cost of one step on it (default 1); ``increment`` is the step
    of decimal-scale leaves (default one unit of the framework's precision); ``alternatives``
    bounds how many other plans of the same cost are listed; ``max_cells`` the work (leaves ×
    budgets of the cost table) before a plan is refused as too large. Raises :class:`InputError` for
    inputs, costs, increment or target that do not fit the framework, :class:`PlanError` when
    the index cannot be planned (no value, a non-linear aggregation above a leaf to raise).
    """
    goal = parse_target(framework, target)
    step = _increment(framework, increment)
    exact_values(framework, inputs)  # every value checked against its scale first
    root = framework.index
    leaves = [node for node in root.walk() if node.is_leaf]
    assumed: list[Note] = []
    excluded: list[Note] = []
    values = dict(inputs.values)
    for leaf in leaves:
        if leaf.input == "assessed" and values.get(leaf.id) is None:
            if leaf.required and leaf.scale is not None:
                values[leaf.id] = leaf.scale.min
                assumed.append(
                    Note(leaf.id, "no value: counted from the scale's minimum", leaf.scale.min)
                )
            else:
                excluded.append(Note(leaf.id, "optional and without a value: not counted"))
        elif leaf.input == "outside" and leaf.outside is not None:
            excluded.append(
                Note(leaf.id, f"outside index of {leaf.outside.source}: set by another agency")
            )
        elif leaf.input == "metric":
            excluded.append(Note(leaf.id, "metric-driven: follows the pushed metrics"))
        elif leaf.input == "linked":
            excluded.append(Note(leaf.id, "linked: another framework's result"))
    base = replace(inputs, values=values)
    current = exact_values(framework, base)
    if current[root.id] is None:
        missing = evaluate(framework, base).index.missing
        why = f" (missing: {', '.join(missing[:10])})" if missing else ""
        raise PlanError(f"{root.id}: the index of {framework.id} has no value{why}", root.id)
    improvable = {
        leaf.id
        for leaf in leaves
        if leaf.input == "assessed" and current[leaf.id] is not None and leaf.scale is not None
    }
    if not improvable:
        raise PlanError(
            f"{root.id}: the index of {framework.id} has no assessed leaf: nothing to improve",
            root.id,
        )
    step_costs = _costs(framework, costs, improvable)
    form = _Linear(base, current, improvable).form(root)
    assert form is not None  # the index has a value
    units = []
    for leaf in leaves:
        if leaf.id not in improvable:
            continue
        scale = leaf.scale
        assert scale is not None
        start = current[leaf.id]
        assert start is not None
        units.append(
            _Unit(
                node=leaf,
                coefficient=form.get(leaf.id, Fraction(0)),
                start=start,
                top=scale.max,
                step=Fraction(1) if scale.integer else step,
                cost=step_costs.get(leaf.id, Fraction(1)),
            )
        )
    in_play = any(not unit.node.scale.integer for unit in units if unit.node.scale is not None)
    current_index = current[root.id]
    assert current_index is not None
    now = evaluate(framework, base).index

    def option(counts: Sequence[int]) -> Option:
        return _option(framework, base, units, counts)

    solved = _Knapsack(framework, units, current_index, goal.units, max_cells)
    chosen = solved.cheapest()
    reachable = chosen is not None
    best = option(chosen if chosen is not None else solved.counts)
    others = tuple(option(counts) for counts in solved.alternatives(chosen, alternatives))
    return Plan(
        framework=framework,
        target=goal,
        reachable=reachable,
        current_index=now.value,
        current_predicate=now.predicate,
        best=best,
        alternatives=others,
        increment=step if in_play else None,
        assumed=tuple(assumed),
        excluded=tuple(excluded),
    )


class _Linear:
    """The index as a linear form of the leaves to raise: each leaf's coefficient."""

    def __init__(
        self, inputs: Inputs, current: Mapping[str, Fraction | None], improvable: set[str]
    ) -> None:
        self.inputs = inputs
        self.current = current
        self.improvable = improvable

    def form(self, node: Node) -> dict[str, Fraction] | None:
        """Each raisable leaf's coefficient in ``node``'s value ({} for a constant); None when
        the node has no value."""
        if self.current[node.id] is None:
            return None
        below = [leaf.id for leaf in node.walk() if leaf.is_leaf and leaf.id in self.improvable]
        if not below:
            return {}
        if node.is_leaf:
            if node.items:
                raise PlanError(
                    f"{node.path}: a leaf of programme items (a mean of a list) cannot be "
                    "planned step by step",
                    node.id,
                )
            return {node.id: Fraction(1)}
        if self.inputs.values.get(node.id) is not None:
            raise PlanError(
                f"{node.path}: a value is given for this node and stands in for the leaves "
                f"below it ({', '.join(below[:5])}{' …' if len(below) > 5 else ''}); a plan "
                "needs the leaves' own values",
                node.id,
            )
        if node.aggregation not in LINEAR:
            raise PlanError(
                f"{node.path}: aggregation {node.aggregation!r} is not linear in its leaves; "
                f"the planner handles {', '.join(sorted(LINEAR))}",
                node.id,
            )
        present = [(child, self.form(child)) for child in node.children]
        counted = [(child, form) for child, form in present if form is not None]
        if node.aggregation == "weighted_mean":
            total = sum((child.weight for child, _ in counted), Fraction(0))
            shares = [child.weight / total for child, _ in counted]
        elif node.aggregation == "mean":
            shares = [Fraction(1, len(counted))] * len(counted)
        else:
            shares = [Fraction(1)] * len(counted)
        combined: dict[str, Fraction] = {}
        for (_, form), share in zip(counted, shares, strict=True):
            for leaf_id, coefficient in form.items():
                combined[leaf_id] = combined.get(leaf_id, Fraction(0)) + (
                    coefficient * share * node.multiplier
                )
        return combined


class _Knapsack:
    """Which number of steps per leaf reaches the target at least cost, solved exactly.

    Gains and costs are scaled to whole numbers; ``tables[u][c]`` is the largest gain the first
    ``u`` leaves reach with a cost of at most ``c``.
    """

    def __init__(
        self,
        framework: Framework,
        units: Sequence[_Unit],
        current: Fraction,
        needed: int,
        max_cells: int,
    ) -> None:
        self.units = units
        self.max_cells = max_cells
        self.counts = [unit.count if unit.coefficient > 0 else 0 for unit in units]
        gains = [unit.coefficient * unit.step for unit in units]
        fulls = [unit.coefficient * (unit.top - unit.start) for unit in units]
        scale = math.lcm(*(g.denominator for g in gains + fulls))
        self.gain = [int(g * scale) for g in gains]
        self.full = [int(f * scale) for f in fulls]
        cost_scale = math.lcm(*(unit.cost.denominator for unit in units))
        whole = [int(unit.cost * cost_scale) for unit in units]
        divisor = math.gcd(*whole)
        self.cost = [w // divisor for w in whole]
        places = _places(framework)

        def meets(gain: int) -> bool:
            value = current + Fraction(gain, scale)
            return rounded_units(value, places, framework.rounding) >= needed

        self.reachable_gain = sum(self.gain_of(u, n) for u, n in enumerate(self.counts))
        self.needed: int | None = None
        if meets(self.reachable_gain):
            low, high = 0, self.reachable_gain  # the least gain that meets the target
            while low < high:
                middle = (low + high) // 2
                if meets(middle):
                    high = middle
                else:
                    low = middle + 1
            self.needed = low
        self.tables: list[list[int]] = []
        self.least = 0  # the least cost, once solved

    def gain_of(self, unit: int, steps: int) -> int:
        if steps <= 0:
            return 0
        return self.full[unit] if steps >= self.counts[unit] else steps * self.gain[unit]

    def cheapest(self) -> list[int] | None:
        """The step counts of the cheapest plan (the highest index among those), or None when
        the target is out of reach."""
        if self.needed is None:
            return None
        if self.needed == 0:
            return [0] * len(self.units)
        budget = self._upper_bound(self.needed)
        if len(self.units) * (budget + 1) > self.max_cells:
            raise PlanError(
                "the plan is too large to compute exactly: use a coarser increment or costs "
                "with fewer decimals"
            )
        tables = [[0] * (budget + 1)]
        for unit in range(len(self.units)):
            tables.append(self._fold(tables[-1], unit))
        self.tables = tables
        final = tables[-1]
        self.least = next(c for c, gain in enumerate(final) if gain >= self.needed)
        counts = [0] * len(self.units)
        budget, gain = self.least, final[self.least]
        for unit in reversed(range(len(self.units))):
            for steps in range(self.counts[unit], -1, -1):
                spent = steps * self.cost[unit]
                if spent <= budget and tables[unit][budget - spent] + self.gain_of(unit, steps) == (
                    gain
                ):
                    counts[unit] = steps
                    budget -= spent
                    gain -= self.gain_of(unit, steps)
                    break
        return counts

    def alternatives(self, chosen: list[int] | None, limit: int) -> Iterator[list[int]]:
        """Up to ``limit`` other step counts of the same (least) cost that reach the target."""
        if chosen is None or not any(chosen) or limit <= 0 or self.needed is None:
            return
        found = 0
        for counts in self._enumerate(len(self.units) - 1, self.least, self.needed, []):
            if counts != chosen:
                yield counts
                found += 1
                if found >= min(limit, MAX_ALTERNATIVES):
                    return

    def _enumerate(self, unit: int, budget: int, need: int, tail: list[int]) -> Iterator[list[int]]:
        if unit < 0:
            yield list(reversed(tail))
            return
        for steps in range(self.counts[unit], -1, -1):
            spent = steps * self.cost[unit]
            if spent > budget:
                continue
            rest = need - self.gain_of(unit, steps)
            if self.tables[unit][budget - spent] >= rest:
                yield from self._enumerate(unit - 1, budget - spent, rest, [*tail, steps])

    def _upper_bound(self, needed: int) -> int:
        """The cost of a plan that reaches ``needed`` (greedy, best gain per cost first): the
        cheapest costs no more, so the tables stop there."""
        order = sorted(
            range(len(self.units)),
            key=lambda u: Fraction(self.gain[u], self.cost[u]),
            reverse=True,
        )
        spent = gained = 0
        for unit in order:
            if gained >= needed:
                break
            count = self.counts[unit]
            if count == 0 or self.gain[unit] == 0:
                continue
            steps = min(count, -(-(needed - gained) // self.gain[unit]))
            spent += steps * self.cost[unit]
            gained += self.gain_of(unit, steps)
        return spent

    def _fold(self, before: list[int], unit: int) -> list[int]:
        """``before`` with this leaf's steps added: after[c] = max over t of before[c − t·cost]
        + gain(t). Full steps form a sliding window over each residue of c mod cost; the last,
        possibly short, step is checked on its own."""
        count, gain, cost = self.counts[unit], self.gain[unit], self.cost[unit]
        size = len(before)
        after = before[:]
        if count == 0 or gain == 0:
            return after
        window = count - 1  # full steps 0…count−1 slide; the count-th may stop at the maximum
        if window > 0:
            for residue in range(min(cost, size)):
                positions = range(residue, size, cost)
                queue: deque[tuple[int, int]] = deque()  # (j, before[c_j] − j·gain), decreasing
                for j, c in enumerate(positions):
                    shifted = before[c] - j * gain
                    while queue and queue[-1][1] <= shifted:
                        queue.pop()
                    queue.append((j, shifted))
                    if queue[0][0] < j - window:
                        queue.popleft()
                    after[c] = j * gain + queue[0][1]
        last, full = count * cost, self.full[unit]
        for c in range(last, size):
            if before[c - last] + full > after[c]:
                after[c] = before[c - last] + full
        return after


def _option(
    framework: Framework, base: Inputs, units: Sequence[_Unit], counts: Sequence[int]
) -> Option:
    values = dict(base.values)
    steps = []
    for unit, count in zip(units, counts, strict=True):
        if count == 0:
            continue
        after = unit.value_after(count)
        values[unit.node.id] = after
        steps.append(
            Step(
                node=unit.node.id,
                name=unit.node.name,
                before=unit.start,
                after=after,
                count=count,
                cost=count * unit.cost,
                contribution=unit.coefficient * (after - unit.start),
            )
        )
    index = evaluate(framework, replace(base, values=values)).index
    return Option(
        cost=sum((step.cost for step in steps), Fraction(0)),
        index=index.value,
        predicate=index.predicate,
        steps=tuple(steps),
    )


def _increment(framework: Framework, raw: object | None) -> Fraction:
    if raw is None:
        return Fraction(1, 10**framework.precision)
    try:
        value = exact(raw)
    except NotANumber as exc:
        raise InputError(f"increment: {exc}") from None
    if value <= 0:
        raise InputError(f"increment {plain(value)} is not positive")
    return value


def _costs(
    framework: Framework, raw: Mapping[str, Any] | None, improvable: set[str]
) -> dict[str, Fraction]:
    """The cost of one step per leaf, checked: every id a leaf the plan may raise, every cost a
    positive number."""
    known = {node.id: node for node in framework.nodes()}
    costs: dict[str, Fraction] = {}
    for node_id, given in (raw or {}).items():
        node = known.get(node_id)
        if node is None:
            raise InputError(f"costs: unknown node {node_id!r} in {framework.id}", node_id)
        if node_id not in improvable:
            kind = "not a leaf" if not node.is_leaf else f"not an assessed leaf ({node.input})"
            if node.is_leaf and node.input == "assessed":
                kind = "not in the index or without a value"
            raise InputError(f"costs: {node_id} is {kind}: the plan does not raise it", node_id)
        try:
            cost = exact(given)
        except NotANumber as exc:
            raise InputError(f"costs: {node_id}: {exc}", node_id) from None
        if cost <= 0:
            raise InputError(f"costs: {node_id}: cost {given} is not positive", node_id)
        costs[node_id] = cost
    return costs


def _places(framework: Framework) -> int:
    scale = framework.index.scale
    return 0 if scale is not None and scale.integer else framework.precision


def _option_dict(framework: Framework, option: Option) -> dict[str, Any]:
    return {
        "cost": _decimal(option.cost),
        "index": _text(option.index),
        "predicate": option.predicate,
        "steps": [
            {
                "node": step.node,
                "name": step.name,
                "from": _leaf_text(framework, step.node, step.before),
                "to": _leaf_text(framework, step.node, step.after),
                "steps": step.count,
                "cost": _decimal(step.cost),
                "contribution": format(
                    round_exact(
                        step.contribution, framework.contribution_precision, framework.rounding
                    ),
                    "f",
                ),
            }
            for step in option.steps
        ],
    }


def _leaf_value(framework: Framework, note: Note) -> str | None:
    return None if note.value is None else _leaf_text(framework, note.node, note.value)


def _leaf_text(framework: Framework, node_id: str, value: Fraction) -> str:
    """A leaf's value as its scale shows it: a level as a whole number, a decimal value with at
    least the framework's precision (1.00), every digit kept."""
    scale = framework.node(node_id).scale
    if scale is not None and scale.integer:
        return _decimal(value)
    return _decimal(value, framework.precision)


def _decimal(value: Fraction, places: int = 0) -> str:
    """``value`` as exact decimal text with at least ``places`` decimals (inputs, increments and
    costs are decimals, so their sums and products have a finite expansion)."""
    while places < 30 and (value * 10**places).denominator != 1:
        places += 1
    return format(round_exact(value, places), "f")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
