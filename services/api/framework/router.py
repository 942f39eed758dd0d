"""Frameworks as dashboards need them: every node's id, name, weight, scale and bands."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Query, Response

from services.api.framework.schemas import (
    FrameworkBand,
    FrameworkLink,
    FrameworkMetric,
    FrameworkNode,
    FrameworkOut,
    FrameworkOutside,
    FrameworkPage,
    FrameworkPeriods,
    FrameworkScale,
    FrameworkSummary,
)
from services.api.framework.service import get_or_404
from services.scoring.engine import Band, Framework, Node, Scale
from services.scoring.engine.numbers import plain
from services.scoring.frameworks import families

router = APIRouter(prefix="/v1/frameworks", tags=["frameworks"])


def scale_out(scale: Scale) -> FrameworkScale:
    return FrameworkScale(
        min=plain(scale.min),
        max=plain(scale.max),
        integer=scale.integer,
        labels={str(level): label for level, label in scale.labels.items()},
        unit=scale.unit,
    )


def bands_out(bands: tuple[Band, ...]) -> list[FrameworkBand]:
    return [
        FrameworkBand(
            predicate=band.predicate,
            level=None if band.level is None else plain(band.level),
            from_=plain(band.lower),
            to=None if band.upper is None else plain(band.upper),
        )
        for band in bands
    ]


def node_out(node: Node) -> FrameworkNode:
    return FrameworkNode(
        id=node.id,
        name=node.name,
        description=node.description,
        weight=plain(node.weight),
        scale=None if node.scale is None else scale_out(node.scale),
        required=node.required,
        aggregation=node.aggregation,
        input=node.input,
        items=node.items,
        metric=None
        if node.metric is None
        else FrameworkMetric(
            keys=list(node.metric.metric_keys),
            multiplier=plain(node.metric.multiplier),
            clamp=node.metric.clamp,
            bands=bands_out(node.metric.bands),
        ),
        links=[
            FrameworkLink(framework=link.framework, node=link.node, scale=scale_out(link.scale))
            for link in node.links
        ],
        outside=None
        if node.outside is None
        else FrameworkOutside(
            source=node.outside.source,
            absent_value=None
            if node.outside.absent_value is None
            else plain(node.outside.absent_value),
        ),
        predicates=bands_out(node.predicates),
        children=[node_out(child) for child in node.children],
    )


def framework_summary(framework: Framework) -> FrameworkSummary:
    return FrameworkSummary(
        id=framework.id,
        name=framework.name,
        version=framework.version,
        family=framework.family,
        in_force=FrameworkPeriods(from_=framework.in_force.first, to=framework.in_force.last),
        status=framework.status,
        status_note=framework.status_note,
        source=framework.source,
        description=framework.description,
        index_node=framework.index.id,
        precision=framework.precision,
        rounding=framework.rounding,
        content_hash=framework.content_hash,
    )


def framework_out(framework: Framework) -> FrameworkOut:
    return FrameworkOut(
        **framework_summary(framework).model_dump(),
        trees=[node_out(root) for root in framework.roots],
    )


@lru_cache(maxsize=64)
def _tree_body(framework_id: str, content_hash: str) -> bytes:
    """A framework's rendered tree, once per content (``content_hash`` is part of the key: a
    reloaded registry with changed files renders anew)."""
    return framework_out(get_or_404(framework_id)).model_dump_json().encode()


@router.get("", response_model=FrameworkPage, summary="The scoring frameworks")
async def list_frameworks(
    family: Annotated[
        str | None, Query(description="Only this instrument's versions", examples=["e-government"])
    ] = None,
    period: Annotated[
        int | None,
        Query(ge=2000, le=2100, description="Only the versions in force for this period"),
    ] = None,
) -> Response:
    """Every version of every instrument, by instrument and oldest first, with its provenance:
    the periods it is in force for, whether it is official, provisional or Cerdas's own, and its
    source. `?family=e-government&period=2026` names the version a period is evaluated on."""
    summaries = [
        framework_summary(framework)
        for name, versions in families().items()
        if family is None or name == family
        for framework in versions
        if period is None or framework.in_force.covers(period)
    ]
    return Response(FrameworkPage(items=summaries).model_dump_json(), media_type="application/json")


@router.get(
    "/{framework_id}", response_model=FrameworkOut, summary="A framework with its full node tree"
)
async def get_framework(framework_id: str) -> Response:
    """Everything a dashboard needs to label results without hard-coding: ids, official names,
    weights, scales (with level labels), aggregation, input kinds and predicate bands."""
    framework = get_or_404(framework_id)
    body = _tree_body(framework.id, framework.content_hash)
    return Response(body, media_type="application/json")
