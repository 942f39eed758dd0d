"""Assessments and their results: the explained tree, the summary, rankings, trends, comparisons
and dashboard figures. Every read is served from stored results and answers If-None-Match."""

from __future__ import annotations

import statistics
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from services.api.frameworks.router import get_or_404
from services.api.results import repository
from services.api.results.repository import only_published
from services.kit.auth import MaybePrincipal, Principal
from services.kit.db import DbSession
from services.kit.errors import NotFound, invalid
from services.kit.http import json_response
from services.kit.pagination import decode_cursor, encode_cursor
from services.kit.results_cache import ResultsCache
from services.models import ASSESSMENT_STATES, Region
from services.scoring.engine import Framework, round_exact

router = APIRouter(tags=["results"])


def cache(request: Request) -> ResultsCache:
    results_cache: ResultsCache = request.app.state.results_cache
    return results_cache


FrameworkQuery = Annotated[str, Query(description="Framework id", examples=["spbe-2020"])]
PeriodQuery = Annotated[int, Query(ge=2000, le=2100, description="Evaluation year")]
ProvinceQuery = Annotated[
    str | None, Query(pattern=r"^\d{2}$", description="Province code, e.g. 32 (Jawa Barat)")
]


def text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def rounded(framework: Framework, value: Fraction | Decimal) -> str:
    return format(round_exact(Fraction(value), framework.precision, framework.rounding), "f")


async def check_region(session: DbSession, code: str | None, *, province: bool = False) -> None:
    if code is None:
        return
    region = await session.get(Region, code)
    if region is None or (province and region.kind != "provinsi"):
        kind = "province" if province else "region"
        raise NotFound(f"No {kind} with Kemendagri code {code!r}.")


def assessment_json(row: Any) -> dict[str, Any]:
    assessment, state, name, province_code = row
    return {
        "id": str(assessment.id),
        "region": {"code": assessment.region_code, "name": name, "province_code": province_code},
        "framework": assessment.framework_id,
        "period": assessment.period,
        "stage": assessment.stage,
        "state": assessment.state,
        "input_revision": assessment.input_revision,
        "result": None
        if state is None
        else {
            "index": text(state.index_value),
            "predicate": state.predicate,
            "complete": state.complete,
            "input_revision": state.input_revision,
            "computed_at": state.computed_at.isoformat(),
            "error": state.error,
        },
    }


@router.get("/v1/assessments", summary="Assessments, filtered")
async def list_assessments(
    session: DbSession,
    principal: MaybePrincipal,
    framework: Annotated[str | None, Query()] = None,
    period: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    region: Annotated[str | None, Query(examples=["32.71"])] = None,
    province: ProvinceQuery = None,
    state: Annotated[str | None, Query(description=", ".join(ASSESSMENT_STATES))] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    if framework is not None:
        get_or_404(framework)
    await check_region(session, region)
    await check_region(session, province, province=True)
    if state is not None and state not in ASSESSMENT_STATES:
        raise invalid("query", "/state", "unknown", f"query /state: unknown state {state!r}")
    after = decode_cursor(cursor, uuid.UUID)[0] if cursor else None
    rows = await repository.assessments_page(
        session,
        framework=framework,
        period=period,
        region=region,
        province=province,
        state=state,
        after=after,
        limit=limit + 1,
        principal=principal,
    )
    items = [assessment_json(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > limit else None
    return json_response({"items": items, "next_cursor": next_cursor})


async def _assessment_or_404(
    session: DbSession, assessment_id: uuid.UUID, principal: Principal | None
) -> Any:
    row = await repository.assessment(session, assessment_id, principal)
    if row is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return row


@router.get("/v1/assessments/{assessment_id}", summary="One assessment")
async def get_assessment(
    assessment_id: uuid.UUID, session: DbSession, principal: MaybePrincipal
) -> Response:
    row = await _assessment_or_404(session, assessment_id, principal)
    return json_response(assessment_json(row))


@router.get("/v1/assessments/{assessment_id}/results", summary="The full explained result tree")
async def get_results(
    assessment_id: uuid.UUID, session: DbSession, principal: MaybePrincipal
) -> Response:
    """Every node in framework order: value, predicate, weight, contribution to its parent, where
    the value came from (inputs), what is missing, how much evidence supports it, and the input
    revision and time of the computation."""
    row = await _assessment_or_404(session, assessment_id, principal)
    assessment, state = row[0], row[1]
    framework = get_or_404(assessment.framework_id)
    stored = {node.node_id: node for node in await repository.result_nodes(session, assessment_id)}
    evidence = await repository.evidence_counts(session, assessment_id)
    nodes = []
    for node in framework.nodes():
        result = stored.get(node.id)
        nodes.append(
            {
                "id": node.id,
                "name": node.name,
                "parent": result.parent_id if result else None,
                "value": text(result.value) if result else None,
                "predicate": result.predicate if result else None,
                "weight": text(result.weight) if result else None,
                "contribution": text(result.contribution) if result else None,
                "source": result.source if result else "missing",
                "inputs": result.detail.get("inputs", []) if result else [],
                "missing": result.detail.get("missing", []) if result else [],
                "note": result.detail.get("note") if result else None,
                # For an entered value: "verified" (the assessor's) or "self" (the region's own).
                "value_from": result.detail.get("value_from") if result else None,
                "evidence_count": evidence.get(node.id, 0),
                "input_revision": result.input_revision if result else None,
                "computed_at": result.computed_at.isoformat() if result else None,
            }
        )
    payload = assessment_json(row) | {
        "framework_version": framework.version,
        "framework_hash": state.framework_hash if state else None,
        "stale": state is None or state.input_revision < assessment.input_revision,
        "nodes": nodes,
    }
    return json_response(payload)


async def _ranks(
    session: DbSession,
    framework: str,
    period: int,
    region: str,
    province: str | None,
    published_only: bool,
) -> dict[str, Any]:
    national = await repository.ranking(session, framework, period, None, published_only)
    provincial = await repository.ranking(session, framework, period, province, published_only)
    mine = {r.region_code: r for r in national}.get(region)
    mine_province = {r.region_code: r for r in provincial}.get(region)
    return {
        "national": mine.rank if mine else None,
        "of_national": len(national),
        "province": mine_province.rank if mine_province else None,
        "of_province": len(provincial),
    }


@router.get("/v1/assessments/{assessment_id}/summary", summary="Index, predicate, parts, rank")
async def get_summary(
    assessment_id: uuid.UUID, request: Request, session: DbSession, principal: MaybePrincipal
) -> Response:
    """The figures of a results letter: the final index and predicate, the index's parts (the
    five GMSC components, the four SPBE domains), national and provincial rank, improvement."""

    async def build() -> dict[str, Any]:
        return await summary_payload(session, assessment_id, principal)

    # Visibility is checked when building; a state change bumps the version, so a cached
    # answer never outlives the visibility it was built under.
    key = ("summary", assessment_id, principal.key_id if principal else None)
    return await cache(request).respond(request.app.state.runtime.engine, key, build)


async def summary_payload(
    session: DbSession, assessment_id: uuid.UUID, principal: Principal | None
) -> dict[str, Any]:
    row = await _assessment_or_404(session, assessment_id, principal)
    assessment, state, _, province_code = row
    framework = get_or_404(assessment.framework_id)
    stored = {node.node_id: node for node in await repository.result_nodes(session, assessment_id)}
    parts = [
        {
            "id": child.id,
            "name": child.name,
            "weight": text(stored[child.id].weight),
            "value": text(stored[child.id].value),
        }
        for child in framework.index.children
        if child.id in stored
    ]
    scope = only_published(principal)
    trend = await repository.trend(session, assessment.framework_id, assessment.region_code, scope)
    history = {row.period: row.index_value for row in trend}
    previous = history.get(assessment.period - 1)
    index = state.index_value if state else None
    return {
        "assessment_id": str(assessment.id),
        "region": assessment.region_code,
        "framework": assessment.framework_id,
        "period": assessment.period,
        "index": text(index),
        "predicate": state.predicate if state else None,
        "parts": parts,
        "rank": await _ranks(
            session,
            assessment.framework_id,
            assessment.period,
            assessment.region_code,
            province_code,
            scope,
        ),
        "previous_index": text(previous),
        "improvement": None if index is None or previous is None else text(index - previous),
    }


async def ranking_items(
    session: DbSession,
    framework: str,
    period: int,
    province: str | None,
    published_only: bool,
) -> list[dict[str, Any]]:
    return [
        {
            "rank": r.rank,
            "region": r.region_code,
            "name": r.name,
            "province_code": r.province_code,
            "index": text(r.index_value),
            "predicate": r.predicate,
            "previous_rank": r.previous_rank,
            "movement": None if r.previous_rank is None else r.previous_rank - r.rank,
            "previous_index": text(r.previous_index),
            "improvement": None
            if r.previous_index is None
            else text(r.index_value - r.previous_index),
        }
        for r in await repository.ranking(session, framework, period, province, published_only)
    ]


@router.get("/v1/rankings", summary="Ranking of a framework and period, national or provincial")
async def get_ranking(
    request: Request,
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    province: ProvinceQuery = None,
) -> Response:
    """Equal indices share a rank and the next rank is skipped (1, 2, 2, 4), as competitions
    publish them. `movement` is previous rank − rank (positive: moved up)."""
    get_or_404(framework)
    scope = only_published(principal)

    async def build() -> dict[str, Any]:
        await check_region(session, province, province=True)
        items = await ranking_items(session, framework, period, province, scope)
        return {"framework": framework, "period": period, "province": province, "items": items}

    key = ("rankings", framework, period, province, scope)
    return await cache(request).respond(request.app.state.runtime.engine, key, build)


@router.get("/v1/trends", summary="A region's index per period, with improvement")
async def get_trend(
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    region: Annotated[str, Query(examples=["32.75"])],
) -> Response:
    get_or_404(framework)
    await check_region(session, region)
    items: list[dict[str, Any]] = []
    previous: Decimal | None = None
    for row in await repository.trend(session, framework, region, only_published(principal)):
        improvement = None
        if row.index_value is not None and previous is not None:
            improvement = text(row.index_value - previous)
        items.append(
            {
                "period": row.period,
                "index": text(row.index_value),
                "predicate": row.predicate,
                "improvement": improvement,
            }
        )
        previous = row.index_value
    return json_response({"framework": framework, "region": region, "items": items})


@router.get("/v1/compare", summary="Regions side by side, node by node")
async def compare(
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    regions: Annotated[str, Query(description="Comma-separated codes", examples=["32.71,32.75"])],
) -> Response:
    found = get_or_404(framework)
    codes = [code.strip() for code in regions.split(",") if code.strip()]
    if not 1 <= len(codes) <= 50:
        raise invalid("query", "/regions", "count", "query /regions: give 1 to 50 region codes")
    known = set((await session.scalars(select(Region.code).where(Region.code.in_(codes)))).all())
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise NotFound(f"No region with Kemendagri code {unknown[0]!r}.")
    values: dict[str, dict[str, Any]] = {}
    scope = only_published(principal)
    for row in await repository.node_values(session, framework, period, codes, scope):
        values.setdefault(row.node_id, {})[row.region_code] = {
            "value": text(row.value),
            "predicate": row.predicate,
        }
    nodes = [
        {
            "id": node.id,
            "name": node.name,
            "values": {code: values.get(node.id, {}).get(code) for code in codes},
        }
        for node in found.nodes()
    ]
    return json_response(
        {"framework": framework, "period": period, "regions": codes, "nodes": nodes}
    )


def _stats(framework: Framework, values: list[Decimal]) -> dict[str, str | None]:
    if not values:
        return {"mean": None, "median": None, "min": None, "max": None}
    exact = [Fraction(value) for value in values]
    return {
        "mean": rounded(framework, sum(exact, Fraction(0)) / len(exact)),
        "median": rounded(framework, statistics.median(exact)),
        "min": text(min(values)),
        "max": text(max(values)),
    }


async def dashboard_payload(
    session: DbSession,
    framework_id: str,
    period: int,
    province: str | None,
    published_only: bool,
) -> dict[str, Any]:
    framework = get_or_404(framework_id)
    ranked = await repository.ranking(session, framework_id, period, province, published_only)
    indices = [row.index_value for row in ranked]
    predicates: dict[str, int] = {}
    for row in ranked:
        if row.predicate:
            predicates[row.predicate] = predicates.get(row.predicate, 0) + 1
    parts: dict[str, list[Decimal]] = {child.id: [] for child in framework.index.children}
    children = await repository.child_values(
        session, framework_id, period, framework.index.id, province, published_only
    )
    for row in children:
        parts.setdefault(row.node_id, []).append(row.value)
    in_scope = await repository.kab_kota_count(session, province)
    return {
        "framework": framework_id,
        "period": period,
        "province": province,
        "coverage": {
            "with_results": len(indices),
            "regions": in_scope,
            "percent": rounded(framework, Fraction(100 * len(indices), in_scope or 1)),
        },
        "predicates": predicates,
        "index": _stats(framework, indices),
        "parts": {
            child.id: {"name": child.name} | _stats(framework, parts.get(child.id, []))
            for child in framework.index.children
        },
    }


@router.get("/v1/dashboard", summary="Province or national figures for a framework and period")
async def dashboard(
    request: Request,
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    province: ProvinceQuery = None,
) -> Response:
    """Counts per predicate, mean and median index, the distribution of the index's parts
    (GMSC components, SPBE domains), and coverage: how many kabupaten/kota have results."""
    scope = only_published(principal)

    async def build() -> dict[str, Any]:
        await check_region(session, province, province=True)
        return await dashboard_payload(session, framework, period, province, scope)

    key = ("dashboard", framework, period, province, scope)
    return await cache(request).respond(request.app.state.runtime.engine, key, build)
