"""A compiled framework: an immutable tree of nodes, built by :mod:`.loader` from a file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from services.scoring.engine.numbers import RoundingMode, plain, round_exact

Aggregation = Literal["weighted_mean", "mean", "sum", "ratio", "min", "max", "pooled_mean", "none"]
AGGREGATIONS: tuple[str, ...] = (
    "weighted_mean",
    "mean",
    "sum",
    "ratio",
    "min",
    "max",
    "pooled_mean",
    "none",
)
InputKind = Literal["assessed", "metric", "linked", "outside"]
INPUT_KINDS: tuple[str, ...] = ("assessed", "metric", "linked", "outside")
# Where a framework's numbers come from: an instrument as its regulation sets it, one whose
# figures are not all confirmed yet (see the file's status note), or an index of Cerdas's own.
Status = Literal["official", "provisional", "cerdas"]
STATUSES: tuple[str, ...] = ("official", "provisional", "cerdas")


@dataclass(frozen=True, slots=True)
class Periods:
    """The evaluation periods (years) a framework version is in force for, ends inclusive;
    None: open on that side."""

    first: int | None = None
    last: int | None = None

    def covers(self, period: int) -> bool:
        return (self.first is None or period >= self.first) and (
            self.last is None or period <= self.last
        )

    def overlaps(self, other: Periods) -> bool:
        firsts = [first for first in (self.first, other.first) if first is not None]
        lasts = [last for last in (self.last, other.last) if last is not None]
        return not firsts or not lasts or max(firsts) <= min(lasts)

    def describe(self) -> str:
        if self.first is None and self.last is None:
            return "every period"
        if self.first is None:
            return f"periods up to {self.last}"
        if self.last is None:
            return f"periods from {self.first}"
        if self.first == self.last:
            return f"period {self.first}"
        return f"periods {self.first}–{self.last}"


@dataclass(frozen=True, slots=True)
class Scale:
    """The range a node's value lives in; ``integer`` for maturity levels."""

    min: Fraction
    max: Fraction
    integer: bool = False
    labels: Mapping[int, str] = field(default_factory=dict)
    unit: str | None = None

    def contains(self, value: Fraction) -> bool:
        if self.integer and value.denominator != 1:
            return False
        return self.min <= value <= self.max

    def describe(self) -> str:
        kind = "whole numbers " if self.integer else ""
        return f"{kind}{plain(self.min)}–{plain(self.max)}"

    def rescale(self, value: Fraction, target: Scale) -> Fraction:
        """``value`` on this scale, mapped linearly onto ``target``."""
        share = (value - self.min) / (self.max - self.min)
        return target.min + share * (target.max - target.min)


@dataclass(frozen=True, slots=True)
class Band:
    """``lower`` ≤ value < ``upper`` (``upper`` None: up to the scale's end, inclusive)."""

    lower: Fraction
    upper: Fraction | None
    predicate: str | None = None
    level: Fraction | None = None

    def holds(self, value: Fraction) -> bool:
        return value >= self.lower and (self.upper is None or value < self.upper)


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How a metric-driven leaf gets its value from pushed metrics."""

    key: str | None = None  # the value of one metric
    numerator: str | None = None  # or a ratio of two metrics
    denominator: str | None = None
    multiplier: Fraction = Fraction(1)
    clamp: bool = False  # cap at the node's scale (e.g. 112% of target counts as 100%)
    bands: tuple[Band, ...] = ()  # then banded into a level (U4SSC: % of target → 1–4)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        keys = (self.key,) if self.key else (self.numerator, self.denominator)
        return tuple(key for key in keys if key)


@dataclass(frozen=True, slots=True)
class LinkRule:
    """Where a linked leaf takes its value: another framework's node for the same region and
    period. A leaf may name several (one per version of an instrument); the one whose framework
    is in force for the period counts."""

    framework: str
    node: str
    scale: Scale  # the source node's scale, rescaled onto this node's scale

    @property
    def ref(self) -> str:
        return f"{self.framework}/{self.node}"


@dataclass(frozen=True, slots=True)
class OutsideRule:
    """A leaf scored by another agency's instrument (an outside index), not by the region's
    evidence: an assessor enters its value; while there is none, ``absent_value`` counts if the
    methodology says so (IPD counts 1), else the leaf has no value."""

    source: str  # the instrument and its agency, e.g. "Bappenas (Satu Data Indonesia)"
    absent_value: Fraction | None = None

    def absent_note(self) -> str:
        if self.absent_value is None:
            return f"no value from {self.source} yet"
        return f"no value from {self.source} yet: counted as {plain(self.absent_value)}"


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    name: str
    path: str
    weight: Fraction
    scale: Scale | None
    required: bool
    children: tuple[Node, ...] = ()
    aggregation: Aggregation | None = None  # inner nodes
    numerator: str | None = None  # ratio aggregation
    denominator: str | None = None
    multiplier: Fraction = Fraction(1)
    input: InputKind | None = None  # leaves
    items: bool = False  # an assessed leaf taking a list (programme scores)
    metric: MetricRule | None = None
    links: tuple[LinkRule, ...] = ()
    outside: OutsideRule | None = None
    predicates: tuple[Band, ...] = ()
    description: str | None = None

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Framework:
    """A scoring framework: metadata, rounding rules and the trees of nodes.

    ``roots`` holds the index tree first; further roots are views that are computed and reported
    but do not feed the index (the GMSC dimensions and programme completion).
    """

    id: str
    name: str
    version: str
    family: str  # the instrument this is a version of, e.g. "e-government"
    in_force: Periods
    status: Status
    status_note: str | None  # what is provisional, or why the index is Cerdas's own
    source: str | None
    description: str | None
    precision: int
    contribution_precision: int
    rounding: RoundingMode
    roots: tuple[Node, ...]
    content_hash: str
    file: str
    # Every node in order (each root's tree depth first) and their ids, worked out once: a
    # national recompute walks the same few frameworks tens of thousands of times.
    all_nodes: tuple[Node, ...] = field(init=False, repr=False, compare=False)
    node_ids: frozenset[str] = field(init=False, repr=False, compare=False)
    # Each node's weight as a result reports it (rounded as the framework rounds), by node id.
    reported_weights: Mapping[str, Decimal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes = tuple(node for root in self.roots for node in root.walk())
        object.__setattr__(self, "all_nodes", nodes)
        object.__setattr__(self, "node_ids", frozenset(node.id for node in nodes))
        places, mode = self.contribution_precision, self.rounding
        weights = {node.id: round_exact(node.weight, places, mode).normalize() for node in nodes}
        object.__setattr__(self, "reported_weights", weights)

    @property
    def index(self) -> Node:
        return self.roots[0]

    def nodes(self) -> Iterator[Node]:
        return iter(self.all_nodes)

    def node(self, node_id: str) -> Node:
        for node in self.nodes():
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def has_assessed_inputs(self) -> bool:
        """Whether people enter values (and so review and publish them); a framework of only
        metric-driven and linked leaves is a computed view."""
        return any(node.is_leaf and node.input == "assessed" for node in self.nodes())

    @property
    def links(self) -> tuple[LinkRule, ...]:
        return tuple(link for node in self.nodes() for link in node.links)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        keys: dict[str, None] = {}
        for node in self.nodes():
            if node.metric is not None:
                keys.update(dict.fromkeys(node.metric.metric_keys))
        return tuple(keys)
