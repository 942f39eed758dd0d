"""The result of scoring: an immutable tree of node results, serialisable to JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from services.scoring.engine.model import Framework, Scale
from services.scoring.engine.numbers import decimal_text, plain

Source = Literal["input", "computed", "metric", "linked", "outside", "group", "missing"]


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node of a scored framework.

    ``value`` is rounded by the framework's rules (parents use the unrounded value); ``source``
    says where it came from (``outside``: an outside index's value, or the value counted while
    it is absent, with a ``note`` saying so); ``inputs`` names what it was computed from (child
    ids, ``metric:<key>``, ``linked:<framework>/<node>``, ``value:<id>`` for a given value) and
    ``missing`` the required inputs below it that were not given; a metric-driven leaf's
    ``metrics`` are the metric values it was computed from, as decimal text (at most six
    decimals), in the rule's order.
    """

    id: str
    name: str
    path: str
    parent: str | None
    value: Decimal | None
    scale: Scale | None
    weight: Decimal
    contribution: Decimal | None
    predicate: str | None
    source: Source
    inputs: tuple[str, ...]
    missing: tuple[str, ...]
    note: str | None = None
    metrics: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "parent": self.parent,
            "value": decimal_text(self.value),
            "scale": None
            if self.scale is None
            else {
                "min": plain(self.scale.min),
                "max": plain(self.scale.max),
                "integer": self.scale.integer,
            },
            "weight": decimal_text(self.weight),
            "contribution": decimal_text(self.contribution),
            "predicate": self.predicate,
            "source": self.source,
            "inputs": list(self.inputs),
            "missing": list(self.missing),
            "note": self.note,
            "metrics": dict(self.metrics),
        }


# A frozen dataclass's __init__ sets each field through object.__setattr__; a national run builds
# hundreds of thousands of node results, so the engine fills the slots directly (the same value).
_new_node = object.__new__
(
    _id,
    _name,
    _path,
    _parent,
    _value,
    _scale,
    _weight,
    _contribution,
    _predicate,
    _source,
    _inputs,
    _missing,
    _note,
    _metrics,
) = (NodeResult.__dict__[name].__set__ for name in NodeResult.__slots__)


def node_result(
    id: str,
    name: str,
    path: str,
    parent: str | None,
    value: Decimal | None,
    scale: Scale | None,
    weight: Decimal,
    contribution: Decimal | None,
    predicate: str | None,
    source: Source,
    inputs: tuple[str, ...],
    missing: tuple[str, ...],
    note: str | None,
    metrics: tuple[tuple[str, str], ...],
) -> NodeResult:
    """``NodeResult(...)`` with every field given, built without its __init__."""
    node = _new_node(NodeResult)
    _id(node, id)
    _name(node, name)
    _path(node, path)
    _parent(node, parent)
    _value(node, value)
    _scale(node, scale)
    _weight(node, weight)
    _contribution(node, contribution)
    _predicate(node, predicate)
    _source(node, source)
    _inputs(node, inputs)
    _missing(node, missing)
    _note(node, note)
    _metrics(node, metrics)
    return node


@dataclass(frozen=True, slots=True)
class Result:
    framework: Framework
    nodes: Mapping[str, NodeResult]

    @property
    def index(self) -> NodeResult:
        return self.nodes[self.framework.index.id]

    @property
    def complete(self) -> bool:
        return self.index.value is not None

    @property
    def missing(self) -> tuple[str, ...]:
        """Required inputs not given, over every tree (index and views)."""
        seen: dict[str, None] = {}
        for root in self.framework.roots:
            seen.update(dict.fromkeys(self.nodes[root.id].missing))
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework.id,
            "version": self.framework.version,
            "framework_hash": self.framework.content_hash,
            "index": decimal_text(self.index.value),
            "predicate": self.index.predicate,
            "complete": self.complete,
            "missing": list(self.missing),
            "nodes": {node_id: node.to_dict() for node_id, node in self.nodes.items()},
        }
