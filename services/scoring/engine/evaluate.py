"""Scoring: a framework and a set of inputs in, an explained result tree out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from services.scoring.engine.aggregations import RULES, Present
from services.scoring.engine.errors import InputError
from services.scoring.engine.model import Band, Framework, Node, Scale
from services.scoring.engine.numbers import (
    NotANumber,
    exact,
    plain,
    round_exact,
    rounded_units,
)
from services.scoring.engine.result import NodeResult, Result, Source, node_result


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a region gave: values by node id, pushed metrics by key, linked results by ref.

    ``values`` maps a node id to a number (an int, a Decimal or a decimal string), or a list of
    numbers for an ``items`` leaf. A value given for an inner node stands in for its children.
    ``linked`` maps ``"<framework>/<node>"`` to that node's value in the linked framework;
    ``unavailable`` says, for a linked ref without a value, why (the result's note);
    ``sources`` where an outside index's value was taken from and its date (the note).
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    linked: Mapping[str, Any] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Computed:
    exact: Fraction | None
    source: Source
    inputs: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    items: tuple[Fraction, ...] = ()
    note: str | None = None
    contribution: Fraction | None = None
    metrics: tuple[tuple[str, str], ...] = ()


def evaluate(framework: Framework, inputs: Inputs, *, strict: bool = False) -> Result:
    """Score ``inputs`` on ``framework``.

    Raises :class:`InputError` for a value on an unknown node or off its node's scale; with
    ``strict``, also when a required input is missing. Without ``strict`` a missing required
    input leaves the nodes above it without a value and lists it in their ``missing``.
    """
    result = _evaluated(framework, inputs).result()
    if strict and result.missing:
        shown = ", ".join(result.missing[:10]) + (" …" if len(result.missing) > 10 else "")
        raise InputError(f"missing required value for {shown}", result.missing[0])
    return result


def evaluate_index(framework: Framework, inputs: Inputs) -> tuple[Decimal | None, str | None]:
    """The index's value and predicate, exactly as ``evaluate(framework, inputs).index`` gives
    them, without explaining the tree (no contributions, no other node rounded): for the
    indices a recompute stores beside the explained one (from self-assessed or verified values
    only). Raises :class:`InputError` as :func:`evaluate` does."""
    evaluation = _evaluated(framework, inputs, explain=False)
    return evaluation.rounded(framework.index)


def exact_values(framework: Framework, inputs: Inputs) -> dict[str, Fraction | None]:
    """Every node's unrounded value (None: no value), as :func:`evaluate` computes it before
    rounding anything; raises :class:`InputError` as :func:`evaluate` does."""
    computed = _evaluated(framework, inputs).computed
    return {node_id: value.exact for node_id, value in computed.items()}


def _evaluated(framework: Framework, inputs: Inputs, *, explain: bool = True) -> _Evaluation:
    known = framework.node_ids
    for node_id in inputs.values:
        if node_id not in known:
            raise InputError(f"unknown node {node_id!r} in {framework.id}", node_id)
    evaluation = _Evaluation(framework, inputs, explain=explain)
    for root in framework.roots:
        evaluation.visit(root)
    return evaluation


class _Evaluation:
    def __init__(self, framework: Framework, inputs: Inputs, *, explain: bool = True) -> None:
        self.framework = framework
        self.inputs = inputs
        self.explain = explain  # work out each child's contribution
        self.computed: dict[str, _Computed] = {}
        self.parents: dict[str, str | None] = {}

    def visit(self, node: Node, parent: Node | None = None) -> _Computed:
        self.parents[node.id] = parent.id if parent else None
        children = [self.visit(child, node) for child in node.children]
        given = self.inputs.values.get(node.id)
        if given is not None and not (node.is_leaf and node.input in ("assessed", "outside")):
            computed = self._given(node, given)  # a published score standing in
            if self.explain and not node.is_leaf:
                self._contributions(node, children)
        elif node.is_leaf:
            computed = self._leaf(node)
        else:
            computed = self._aggregate(node, children)
        self.computed[node.id] = computed
        return computed

    # -- leaves -------------------------------------------------------------------------------

    def _given(self, node: Node, raw: Any) -> _Computed:
        value = self._number(node, raw, node.scale)
        return _Computed(value, "input", inputs=(f"value:{node.id}",))

    def _leaf(self, node: Node) -> _Computed:
        if node.input == "metric":
            return self._metric(node)
        if node.input == "linked":
            return self._linked(node)
        if node.input == "outside":
            return self._outside(node)
        raw = self.inputs.values.get(node.id)
        if raw is None:
            return self._absent(node)
        if node.items:
            if not isinstance(raw, Sequence) or isinstance(raw, str):
                raise InputError(f"{node.id}: expected a list of values, got {raw!r}", node.id)
            items = tuple(self._number(node, item, node.scale) for item in raw)
            if not items:
                return self._absent(node, note="no items given")
            return _Computed(
                sum(items, Fraction(0)) / len(items),
                "input",
                inputs=(f"value:{node.id}",),
                items=items,
            )
        return _Computed(self._number(node, raw, node.scale), "input", (f"value:{node.id}",))

    def _metric(self, node: Node) -> _Computed:
        rule = node.metric
        assert rule is not None
        sources = tuple(f"metric:{key}" for key in rule.metric_keys)
        raws = [self.inputs.metrics.get(key) for key in rule.metric_keys]
        if any(raw is None for raw in raws):
            absent = [key for key, raw in zip(rule.metric_keys, raws, strict=True) if raw is None]
            return self._absent(node, note="no value for metric " + ", ".join(absent))
        values = [
            self._metric_number(node, key, raw)
            for key, raw in zip(rule.metric_keys, raws, strict=True)
        ]
        if rule.key is not None:
            value = values[0] * rule.multiplier
        elif values[1] == 0:
            return self._absent(node, note=f"metric {rule.denominator} is 0", inputs=sources)
        else:
            value = values[0] / values[1] * rule.multiplier
        if rule.bands:
            value = _band_level(rule.bands, value, node)
        if rule.clamp and node.scale is not None:
            value = min(max(value, node.scale.min), node.scale.max)
        if node.scale is not None and not node.scale.contains(value):
            raise InputError(
                f"{node.id}: metric-driven value {plain(value)} is off the scale "
                f"{node.scale.describe()} (metrics {', '.join(rule.metric_keys)})",
                node.id,
            )
        read = tuple(
            (key, plain(number)) for key, number in zip(rule.metric_keys, values, strict=True)
        )
        return _Computed(value, "metric", inputs=sources, metrics=read)

    def _linked(self, node: Node) -> _Computed:
        """The value of the one source given (the version in force for the period, when the
        leaf names one per version), rescaled onto this leaf's scale."""
        given = [rule for rule in node.links if self.inputs.linked.get(rule.ref) is not None]
        refs = tuple(f"linked:{rule.ref}" for rule in node.links)
        if len(given) > 1:
            raise InputError(
                f"{node.id}: give one linked value, not {' and '.join(r.ref for r in given)}",
                node.id,
            )
        if not given:
            notes = [
                self.inputs.unavailable[r.ref]
                for r in node.links
                if r.ref in self.inputs.unavailable
            ]
            why = (
                notes[0] if notes else f"no result yet for {' or '.join(r.ref for r in node.links)}"
            )
            return self._absent(node, note=why, inputs=refs)
        rule = given[0]
        raw = self.inputs.linked[rule.ref]
        source_value = self._number(node, raw, rule.scale, what=f"linked value {rule.ref}")
        value = source_value if node.scale is None else rule.scale.rescale(source_value, node.scale)
        return _Computed(value, "linked", inputs=(f"linked:{rule.ref}",))

    def _outside(self, node: Node) -> _Computed:
        """An outside index's value as entered, or the file's ``absent_value`` while there is
        none (IPD counts 1), said so in the note."""
        rule = node.outside
        assert rule is not None
        raw = self.inputs.values.get(node.id)
        if raw is not None:
            value = self._number(node, raw, node.scale)
            given = self.inputs.sources.get(node.id)
            note = f"from {rule.source}" + (f": {given}" if given else "")
            return _Computed(value, "outside", inputs=(f"value:{node.id}",), note=note)
        if rule.absent_value is None:
            return self._absent(node, note=rule.absent_note())
        return _Computed(rule.absent_value, "outside", note=rule.absent_note())

    def _absent(
        self, node: Node, note: str | None = None, inputs: tuple[str, ...] = ()
    ) -> _Computed:
        missing = (node.id,) if node.required else ()
        return _Computed(None, "missing", inputs=inputs, missing=missing, note=note)

    # -- inner nodes --------------------------------------------------------------------------

    def _aggregate(self, node: Node, children: list[_Computed]) -> _Computed:
        missing = tuple(m for child in children for m in child.missing)
        if node.aggregation == "none":
            return _Computed(None, "group", missing=missing)
        pairs = [
            (child_node, child)
            for child_node, child in zip(node.children, children, strict=True)
            if child.exact is not None
        ]
        used = tuple(child_node.id for child_node, _ in pairs)
        blocked = any(
            child.exact is None and child_node.required
            for child_node, child in zip(node.children, children, strict=True)
        )
        if blocked or not pairs:
            return _Computed(None, "missing", inputs=used, missing=missing)
        rule = RULES[node.aggregation or "none"]
        present = _present(pairs)
        shares: list[Fraction | None] | None = None
        if not self.explain or rule.contribute is None:
            value = rule.combine(node, present)
        elif rule.explain is not None:
            value, shares = rule.explain(node, present)  # one pass for both
        else:
            value = rule.combine(node, present)
            if value is not None:
                shares = rule.contribute(node, present)
        if value is None:
            return _Computed(
                None, "missing", inputs=used, missing=missing, note=f"{node.denominator} is 0"
            )
        if shares is not None:
            for (_, computed), share in zip(pairs, shares, strict=True):
                computed.contribution = share
        return _Computed(value * node.multiplier, "computed", inputs=used, missing=missing)

    def _contributions(self, node: Node, children: list[_Computed]) -> None:
        """What each child adds to ``node``'s value, in ``node``'s units (where that means
        something for the node's aggregation): for a node whose value was given."""
        rule = RULES.get(node.aggregation or "none")
        if rule is None or rule.contribute is None:
            return
        pairs = [
            (child_node, child)
            for child_node, child in zip(node.children, children, strict=True)
            if child.exact is not None
        ]
        shares = rule.contribute(node, _present(pairs))
        for (_, computed), share in zip(pairs, shares, strict=True):
            computed.contribution = share

    # -- checks and output --------------------------------------------------------------------

    def _number(
        self, node: Node, raw: Any, scale: Scale | None, *, what: str = "value"
    ) -> Fraction:
        try:
            value = exact(raw)
        except NotANumber as exc:
            raise InputError(f"{node.id}: {exc}", node.id) from None
        if scale is not None and not scale.contains(value):
            raise InputError(
                f"{node.id}: {what} {raw} is off the scale {scale.describe()}", node.id
            )
        return value

    def _metric_number(self, node: Node, key: str, raw: Any) -> Fraction:
        try:
            return exact(raw)
        except NotANumber as exc:
            raise InputError(f"{node.id}: metric {key}: {exc}", node.id) from None

    def rounded(self, node: Node) -> tuple[Decimal | None, str | None]:
        """``node``'s published value (rounded by the framework's rules) and its predicate."""
        exact_value = self.computed[node.id].exact
        if exact_value is None:
            return None, None
        framework = self.framework
        places = 0 if node.scale is not None and node.scale.integer else framework.precision
        units = rounded_units(exact_value, places, framework.rounding)
        return Decimal(units).scaleb(-places), _predicate(node, units, places)

    def result(self) -> Result:
        framework = self.framework
        places, mode = framework.contribution_precision, framework.rounding
        weights = framework.reported_weights
        nodes: dict[str, NodeResult] = {}
        for node in framework.all_nodes:
            computed = self.computed[node.id]
            value, predicate = self.rounded(node)
            contribution = None
            if computed.contribution is not None:
                contribution = round_exact(computed.contribution, places, mode)
            nodes[node.id] = node_result(
                node.id,
                node.name,
                node.path,
                self.parents[node.id],
                value,
                node.scale,
                weights[node.id],
                contribution,
                predicate,
                computed.source,
                computed.inputs,
                computed.missing,
                computed.note,
                computed.metrics,
            )
        return Result(framework, MappingProxyType(nodes))


def _present(pairs: list[tuple[Node, _Computed]]) -> list[Present]:
    """The children that have a value, as the aggregation rules take them."""
    present = []
    for node, computed in pairs:
        assert computed.exact is not None
        present.append(Present(node, computed.exact, computed.items))
    return present


def _predicate(node: Node, units: int, places: int) -> str | None:
    """The band of the published value (``units`` of 10^-``places``, as rounded), or the
    scale's label of a level."""
    if node.predicates:
        rounded = Fraction(units, 10**places)
        for band in node.predicates:
            if band.holds(rounded):
                return band.predicate
    if node.scale is not None and node.scale.labels and units % 10**places == 0:
        return node.scale.labels.get(units // 10**places)
    return None


def _band_level(bands: tuple[Band, ...], value: Fraction, node: Node) -> Fraction:
    for band in bands:
        if band.holds(value) and band.level is not None:
            return band.level
    raise InputError(f"{node.id}: metric-driven value {plain(value)} falls in no band", node.id)
