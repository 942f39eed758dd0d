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
from math import lcm
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
Explain = Callable[[Node, Sequence[Present]], tuple[Fraction | None, list[Fraction | None]]]


@dataclass(frozen=True, slots=True)
class Rule:
    """``combine`` gives the node's value (None: undefined, e.g. a zero denominator);
    ``contribute``, where shares mean something, each present child's share of it;
    ``explain``, where given, both at once from one pass over the children (the same numbers
    as ``combine`` and ``contribute``)."""

    combine: Combine
    contribute: Contribute | None = None
    explain: Explain | None = None


def _total(values: Sequence[Fraction]) -> Fraction:
    return _sum_terms([(value.numerator, value.denominator) for value in values])


def _sum_terms(terms: Sequence[tuple[int, int]]) -> Fraction:
    """The exact sum of ``terms`` (numerator, positive denominator), reduced once at the end
    rather than after every addition (Fraction's own ``+``): scores share a few denominators
    (weights, hundredths), so the common one stays small."""
    total, common = 0, 1
    for numerator, denominator in terms:
        if denominator == common:
            total += numerator
        else:
            multiple = lcm(common, denominator)
            total = total * (multiple // common) + numerator * (multiple // denominator)
            common = multiple
    return Fraction(total, common)


def _weights(present: Sequence[Present]) -> Fraction:
    return _total([child.node.weight for child in present])


def _products(present: Sequence[Present]) -> list[tuple[int, int]]:
    """Each child's weight × value, unreduced."""
    return [
        (
            child.node.weight.numerator * child.value.numerator,
            child.node.weight.denominator * child.value.denominator,
        )
        for child in present
    ]


def _weighted_mean(node: Node, present: Sequence[Present]) -> Fraction | None:
    weights = _weights(present)
    if weights == 0:
        return None
    return _sum_terms(_products(present)) / weights


def _weighted_shares(node: Node, present: Sequence[Present]) -> list[Fraction | None]:
    weights = _weights(present)
    if weights == 0:
        return [None for _ in present]
    return _shares(_products(present), weights)


def _shares(products: list[tuple[int, int]], weights: Fraction) -> list[Fraction | None]:
    """Each weight × value over the sum of the weights: a child's share of a weighted mean."""
    return [
        Fraction(numerator * weights.denominator, denominator * weights.numerator)
        for numerator, denominator in products
    ]


def _weighted_explained(
    node: Node, present: Sequence[Present]
) -> tuple[Fraction | None, list[Fraction | None]]:
    """:func:`_weighted_mean` and :func:`_weighted_shares`, the weights and products worked
    out once."""
    weights = _weights(present)
    if weights == 0:
        return None, [None for _ in present]
    products = _products(present)
    return _sum_terms(products) / weights, _shares(products, weights)


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
        "weighted_mean": Rule(_weighted_mean, _weighted_shares, _weighted_explained),
        "mean": Rule(_mean, _mean_shares),
        "sum": Rule(_sum, _sum_shares),
        "min": Rule(lambda node, present: min(child.value for child in present)),
        "max": Rule(lambda node, present: max(child.value for child in present)),
        "pooled_mean": Rule(_pooled_mean),
        "ratio": Rule(_ratio),
    }
)
