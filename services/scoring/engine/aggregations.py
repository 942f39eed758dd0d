"""How an inner node combines its children, and what each child contributes: one table.

Each rule a framework file may name (``aggregation:``) maps to how the present children's values
combine into the node's value, and, where a share has a meaning, how much each child adds to it
(in the node's units). ``none`` (a group with no value of its own) is not a rule: the evaluator
treats it before any combining. The table follows h11's transition table: adding a rule is one
entry here and its name in :data:`.model.AGGREGATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import NamedTuple

from services.scoring.engine.model import Node


class Present(NamedTuple):
    """A child that has a value: its node, the value, and its items (for pooled means)."""

    node: Node
    value: Fraction
    items: tuple[Fraction, ...]


Combine = Callable[[Node, Sequence[Present]], Fraction | None]
Contribute = Callable[[Node, Sequence[Present]], list[Fraction | None]]


@dataclass(frozen=True, slots=True)
class Rule:
    """``combine`` gives the node's value (None: undefined, e.g. a zero denominator);
    ``contribute``, where shares mean something, each present child's share of it."""

    combine: Combine
    contribute: Contribute | None = None


def _total(values: Sequence[Fraction]) -> Fraction:
    return sum(values, Fraction(0))


def _weights(present: Sequence[Present]) -> Fraction:
    return _total([child.node.weight for child in present])


def _weighted_mean(node: Node, present: Sequence[Present]) -> Fraction | None:
    weights = _weights(present)
    if weights == 0:
        return None
    return _total([child.node.weight * child.value for child in present]) / weights


def _weighted_shares(node: Node, present: Sequence[Present]) -> list[Fraction | None]:
    weights = _weights(present)
    return [child.node.weight * child.value / weights if weights else None for child in present]


def _mean(node: Node, present: Sequence[Present]) -> Fraction:
    return _total([child.value for child in present]) / len(present)


def _mean_shares(node: Node, present: Sequence[Present]) -> list[Fraction | None]:
    return [child.value / len(present) for child in present]


def _sum(node: Node, present: Sequence[Present]) -> Fraction:
    return _total([child.value for child in present])


def _sum_shares(node: Node, present: Sequence[Present]) -> list[Fraction | None]:
    return [child.value for child in present]


def _pooled_mean(node: Node, present: Sequence[Present]) -> Fraction | None:
    items = [item for child in present for item in child.items]
    return _total(items) / len(items) if items else None


def _ratio(node: Node, present: Sequence[Present]) -> Fraction | None:
    by_id = {child.node.id: child.value for child in present}
    numerator = by_id.get(node.numerator or "")
    denominator = by_id.get(node.denominator or "")
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "weighted_mean": Rule(_weighted_mean, _weighted_shares),
        "mean": Rule(_mean, _mean_shares),
        "sum": Rule(_sum, _sum_shares),
        "min": Rule(lambda node, present: min(child.value for child in present)),
        "max": Rule(lambda node, present: max(child.value for child in present)),
        "pooled_mean": Rule(_pooled_mean),
        "ratio": Rule(_ratio),
    }
)
