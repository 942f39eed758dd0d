"""Which entered values count: the one rule scoring, plans and any other reader of an
assessment's values share."""

from __future__ import annotations

from typing import Any

from services.domain.assessment.states import Value
from services.scoring.engine import Framework


def counted_values(
    framework: Framework, entered: dict[str, dict[Value, Any]]
) -> tuple[dict[str, Any], dict[str, Value]]:
    """The entered values scoring uses, and which value each one is.

    A leaf counts its verified value, else the region's own. An inner node counts only an
    official value (a ministry-admin's import of a results letter), and only while no leaf
    under it has a verified value: verified figures replace a published stand-in as soon as
    they exist. A value entered on an inner node any other way does not count.
    """
    values: dict[str, Any] = {}
    origins: dict[str, Value] = {}
    verified = {node_id for node_id, given in entered.items() if Value.VERIFIED in given}
    for node in framework.nodes():
        given = entered.get(node.id)
        if not given:
            continue
        if node.is_leaf:
            for kind in (Value.VERIFIED, Value.SELF):
                if kind in given:
                    values[node.id], origins[node.id] = given[kind], kind
                    break
        elif Value.OFFICIAL in given and not verified & _leaves_under(framework, node.id):
            values[node.id], origins[node.id] = given[Value.OFFICIAL], Value.OFFICIAL
    return values, origins


_LEAVES: dict[tuple[str, str], dict[str, frozenset[str]]] = {}


def _leaves_under(framework: Framework, node_id: str) -> frozenset[str]:
    """The ids of the leaves below ``node_id``, worked out once per framework version."""
    key = (framework.id, framework.content_hash)
    if key not in _LEAVES:
        leaves: dict[str, frozenset[str]] = {}
        for node in reversed(list(framework.nodes())):  # children before their parents
            leaves[node.id] = (
                frozenset({node.id})
                if node.is_leaf
                else frozenset().union(*(leaves[child.id] for child in node.children))
            )
        _LEAVES[key] = leaves
    return _LEAVES[key][node_id]
