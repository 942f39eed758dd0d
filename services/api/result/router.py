"""Assessments and their results: the explained tree, the summary, rankings, trends, comparisons
and dashboard figures. Every read is served from stored results and answers If-None-Match.

Answers are rendered from the models of :mod:`services.api.result.schemas` straight to bytes
(the ``response_model`` documents them; FastAPI passes a returned Response through as is).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.result import service
from services.api.result.schemas import (
    AssessmentOut,
    AssessmentPage,
    AssessmentResults,
    Comparison,
    Dashboard,
    Plan,
    PlanIn,
    Ranking,
    Summary,
    Trend,
)
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal, MaybePrincipal
from services.domain.access.principal import Principal
from services.kit.db import DbSession
from services.kit.http import json_response
from services.kit.results_cache import ResultsCache
from services.models import AssessmentState

router = APIRouter(tags=["results"])


def cache(request: Request) -> ResultsCache:
    results_cache: ResultsCache = request.app.state.results_cache
    return results_cache


def anonymous(request: Request, principal: Principal | None) -> Request | None:
    """The request, if its caller is anonymous: a cached answer's key then says all the answer
    depends on, and the same path and query may be answered before routing."""
    return request if principal is None else None


def build_session(request: Request) -> AsyncSession:
    """A session for building a cached read, opened by the build itself: a cache hit takes no
    session at all (nor the per-request dependency's setup and commit), and a miss gives its
    connection back as soon as the answer is built. The builds only read."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker()


FrameworkQuery = Annotated[str, Query(description="Framework id", examples=["spbe-2020"])]
PeriodQuery = Annotated[int, Query(ge=2000, le=2100, description="Evaluation year")]
ProvinceQuery = Annotated[
    str | None, Query(pattern=r"^\d{2}$", description="Province code, e.g. 32 (Jawa Barat)")
]


@router.get("/v1/assessments", response_model=AssessmentPage, summary="Assessments, filtered")
async def list_assessments(
    session: DbSession,
    principal: MaybePrincipal,
    framework: Annotated[str | None, Query()] = None,
    period: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    region: Annotated[str | None, Query(examples=["32.71"])] = None,
    province: ProvinceQuery = None,
    state: Annotated[str | None, Query(description=", ".join(AssessmentState))] = None,
    internal: Annotated[
        bool | None,
        Query(
            description="true: internal assessments of agencies (OPD) only, false: official "
            "ones only; left out: both, as the caller may see them (internal ones: the "
            "region's own keys)"
        ),
    ] = None,
    agency: Annotated[uuid.UUID | None, Query(description="One agency's internal ones")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    page = await service.assessment_page(
        session,
        principal,
        framework=framework,
        period=period,
        region=region,
        province=province,
        state=state,
        internal=internal,
        agency=agency,
        cursor=cursor,
        limit=limit,
    )
    return json_response(page)


@router.get(
    "/v1/assessments/{assessment_id}", response_model=AssessmentOut, summary="One assessment"
)
async def get_assessment(
    assessment_id: uuid.UUID, session: DbSession, principal: MaybePrincipal
) -> Response:
    row = await service.assessment_or_404(session, assessment_id, principal)
    return json_response(service.assessment_out(row))


@router.get(
    "/v1/assessments/{assessment_id}/results",
    response_model=AssessmentResults,
    summary="The full explained result tree",
)
async def get_results(
    assessment_id: uuid.UUID, session: DbSession, principal: MaybePrincipal
) -> Response:
    """Every node in framework order: value, predicate, weight, contribution to its parent, where
    the value came from (inputs), what is missing, how much evidence supports it, and the input
    revision and time of the computation."""
    return json_response(await service.results(session, assessment_id, principal))


@router.get(
    "/v1/assessments/{assessment_id}/summary",
    response_model=Summary,
    summary="Index, predicate, parts, rank",
)
async def get_summary(
    assessment_id: uuid.UUID, request: Request, principal: MaybePrincipal
) -> Response:
    """The figures of a results letter: the final index and predicate, the index's parts (the
    five GMSC components, the four SPBE domains), national and provincial rank, improvement."""

    async def build() -> Summary:
        async with build_session(request) as session:
            return await service.summary(session, assessment_id, principal)

    # Visibility is checked when building; a state change bumps the version, so a cached
    # answer never outlives the visibility it was built under.
    key = ("summary", assessment_id, principal.audit_id if principal else None)
    return await cache(request).respond(
        key, build, scope=lambda summary: summary.framework, anonymous=anonymous(request, principal)
    )


TargetQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=100,
        description="An index value ('3.50') or a predicate of the index ('Memuaskan')",
        examples=["Memuaskan"],
    ),
]
IncrementQuery = Annotated[
    Decimal | None,
    Query(
        gt=0,
        allow_inf_nan=False,
        description="Step of decimal-scale leaves (IPD values); default and least: one unit "
        "of the framework's precision (0.01)",
    ),
]


@router.get(
    "/v1/assessments/{assessment_id}/plan",
    response_model=Plan,
    summary="The cheapest steps to a target index or predicate",
)
async def get_plan(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: MaybePrincipal,
    target: TargetQuery,
    increment: IncrementQuery = None,
) -> Response:
    """Which of the region's own (assessed) indicators to raise, and by how much, to reach the
    target at the fewest steps: exact, from the values that count (verified, else the region's
    own). Each step raises one indicator by a level (or by `increment` on a decimal scale) and
    costs 1; `POST` the same path to give each indicator's cost of a step. The target is judged
    on the published (rounded) index; outside indices (IPD I5, I6, I7, I18), metric-driven
    and linked leaves are not raised (`excluded`). See docs/planner.md."""
    _, answer = await service.plan(
        session, assessment_id, principal, target=target, increment=increment
    )
    return json_response(answer.model_dump(mode="json", by_alias=True))


@router.post(
    "/v1/assessments/{assessment_id}/plan",
    response_model=Plan,
    summary="The cheapest steps to a target, with a cost per indicator",
)
async def post_plan(
    assessment_id: uuid.UUID, body: PlanIn, session: DbSession, principal: CurrentPrincipal
) -> Response:
    """As `GET`, with each leaf's cost of one step (effort in days, say; default 1) in the
    body: a cost table for 47 indicators does not fit a query string. A read: nothing is
    stored, so a repeat is harmless and needs no Idempotency-Key. Needs a key."""
    _, answer = await service.plan(
        session,
        assessment_id,
        principal,
        target=body.target,
        costs=body.costs,
        increment=body.increment,
        where="body",
    )
    return json_response(answer.model_dump(mode="json", by_alias=True))


@router.get(
    "/v1/rankings",
    response_model=Ranking,
    summary="Ranking of a framework and period, national or provincial",
)
async def get_ranking(
    request: Request,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    province: ProvinceQuery = None,
) -> Response:
    """Equal indices share a rank and the next rank is skipped (1, 2, 2, 4), as competitions
    publish them. `movement` is previous rank − rank (positive: moved up)."""
    published_only = not policy.sees_unpublished_figures(principal)

    async def build() -> Ranking:
        async with build_session(request) as session:
            return await service.ranking(session, framework, period, province, published_only)

    key = ("rankings", framework, period, province, published_only)
    return await cache(request).respond(
        key, build, scope=lambda _: framework, anonymous=anonymous(request, principal)
    )


@router.get(
    "/v1/trends", response_model=Trend, summary="A region's index per period, with improvement"
)
async def get_trend(
    session: DbSession,
    principal: MaybePrincipal,
    region: Annotated[str, Query(examples=["32.75"])],
    framework: Annotated[
        str | None, Query(description="One version only", examples=["spbe-2020"])
    ] = None,
    family: Annotated[
        str | None,
        Query(description="Every version of the instrument", examples=["e-government"]),
    ] = None,
) -> Response:
    """By `framework` (one version) or by `family` (every version of the instrument, e.g.
    SPBE 2020 up to 2025 then IPD 2026): a period evaluated on another version than the one
    before it says so (`instrument_changed`) and has no `improvement`."""
    published_only = not policy.sees_unpublished_figures(principal)
    return json_response(await service.trend(session, framework, family, region, published_only))


@router.get("/v1/compare", response_model=Comparison, summary="Regions side by side, node by node")
async def compare(
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    regions: Annotated[str, Query(description="Comma-separated codes", examples=["32.71,32.75"])],
) -> Response:
    codes = [code.strip() for code in regions.split(",") if code.strip()]
    published_only = not policy.sees_unpublished_figures(principal)
    return json_response(await service.compare(session, framework, period, codes, published_only))


@router.get(
    "/v1/dashboard",
    response_model=Dashboard,
    summary="Province or national figures for a framework and period",
)
async def dashboard(
    request: Request,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    province: ProvinceQuery = None,
) -> Response:
    """Counts per predicate, mean and median index, the distribution of the index's parts
    (GMSC components, SPBE domains), and coverage: how many kabupaten/kota have results."""
    published_only = not policy.sees_unpublished_figures(principal)

    async def build() -> Dashboard:
        async with build_session(request) as session:
            return await service.dashboard(session, framework, period, province, published_only)

    key = ("dashboard", framework, period, province, published_only)
    return await cache(request).respond(
        key, build, scope=lambda _: framework, anonymous=anonymous(request, principal)
    )
