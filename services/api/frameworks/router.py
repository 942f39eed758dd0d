"""Frameworks as dashboards need them: every node's id, name, weight, scale and bands."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from services.kit.errors import NotFound
from services.kit.http import json_response
from services.scoring.engine import Band, Framework, Node, Scale
from services.scoring.engine.numbers import plain
from services.scoring.frameworks import registry

router = APIRouter(prefix="/v1/frameworks", tags=["frameworks"])


def scale_json(scale: Scale | None) -> dict[str, Any] | None:
    if scale is None:
        return None
    return {
        "min": plain(scale.min),
        "max": plain(scale.max),
        "integer": scale.integer,
        "labels": {str(level): label for level, label in scale.labels.items()},
        "unit": scale.unit,
    }


def bands_json(bands: tuple[Band, ...]) -> list[dict[str, Any]]:
    return [
        {
            "predicate": band.predicate,
            "level": None if band.level is None else plain(band.level),
            "from": plain(band.lower),
            "to": None if band.upper is None else plain(band.upper),
        }
        for band in bands
    ]


def node_json(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "name": node.name,
        "description": node.description,
        "weight": plain(node.weight),
        "scale": scale_json(node.scale),
        "required": node.required,
        "aggregation": node.aggregation,
        "input": node.input,
        "items": node.items,
        "metric": None
        if node.metric is None
        else {
            "keys": list(node.metric.metric_keys),
            "multiplier": plain(node.metric.multiplier),
            "clamp": node.metric.clamp,
            "bands": bands_json(node.metric.bands),
        },
        "link": None
        if node.link is None
        else {
            "framework": node.link.framework,
            "node": node.link.node,
            "scale": scale_json(node.link.scale),
        },
        "predicates": bands_json(node.predicates),
        "children": [node_json(child) for child in node.children],
    }


def framework_summary(framework: Framework) -> dict[str, Any]:
    return {
        "id": framework.id,
        "name": framework.name,
        "version": framework.version,
        "source": framework.source,
        "description": framework.description,
        "index_node": framework.index.id,
        "precision": framework.precision,
        "rounding": framework.rounding,
        "content_hash": framework.content_hash,
    }


def get_or_404(framework_id: str) -> Framework:
    framework = registry().get(framework_id)
    if framework is None:
        raise NotFound(f"No framework {framework_id!r} (known: {', '.join(sorted(registry()))}).")
    return framework


@router.get("", summary="The scoring frameworks")
async def list_frameworks() -> Response:
    return json_response([framework_summary(f) for f in registry().values()])


@router.get("/{framework_id}", summary="A framework with its full node tree")
async def get_framework(framework_id: str) -> Response:
    """Everything a dashboard needs to label results without hard-coding: ids, official names,
    weights, scales (with level labels), aggregation, input kinds and predicate bands."""
    framework = get_or_404(framework_id)
    payload = framework_summary(framework) | {
        "trees": [node_json(root) for root in framework.roots]
    }
    return json_response(payload)
