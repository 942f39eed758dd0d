"""Agencies (perangkat daerah, OPD) of a region, who answers for which indicator (PJ), the
assessment per agency with the planner's gap, and the agencies side by side.

All of it is the region's own: its operators manage it, its keys read it; to anyone else it
does not exist (404). Writes accept ``Idempotency-Key``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.agency import service
from services.api.agency.schemas import (
    AgencyComparison,
    AgencyIn,
    AgencyOut,
    AgencyPage,
    AgencyPatch,
    AgencyPlan,
    ResponsibilitiesIn,
    ResponsibilitiesOut,
)
from services.api.region.router import REGION_CODE
from services.api.result.router import FrameworkQuery, IncrementQuery, PeriodQuery
from services.domain.access.dependencies import CurrentPrincipal, RequestContext
from services.kit.db import DbSession
from services.kit.http import json_response
from services.kit.idempotency import remember_answer, replayed

router = APIRouter(tags=["agencies"])

RegionCode = Annotated[str, Path(pattern=REGION_CODE, examples=["32.75"])]
OptionalTarget = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        description="An index value ('3.50') or a predicate ('Memuaskan'): share out the plan "
        "to it by PJ; left out, only the indicators and their values",
    ),
]


@router.get(
    "/v1/regions/{code}/agencies",
    response_model=AgencyPage,
    summary="The region's agencies (OPD)",
)
async def list_agencies(
    code: RegionCode,
    session: DbSession,
    principal: CurrentPrincipal,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AgencyPage:
    """By name. The region's own keys only (404 for others)."""
    return await service.page(session, principal, code, cursor, limit)


@router.post(
    "/v1/regions/{code}/agencies",
    status_code=201,
    response_model=AgencyOut,
    summary="Add an agency (OPD) to the region",
)
async def post_agency(
    code: RegionCode,
    body: AgencyIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AgencyOut | JSONResponse:
    """The region's operators. A name the region has already (any case) is 409."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    agency = await service.create(session, context, code, body.model_dump())
    answer = AgencyOut.model_validate(agency)
    remember_answer(session, request, context.principal, 201, answer)
    return answer


@router.patch(
    "/v1/regions/{code}/agencies/{agency_id}",
    response_model=AgencyOut,
    summary="Rename an agency or change its kind",
)
async def patch_agency(
    code: RegionCode,
    agency_id: uuid.UUID,
    body: AgencyPatch,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AgencyOut | JSONResponse:
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    agency = await service.update(
        session, context, code, agency_id, body.model_dump(exclude_unset=True)
    )
    answer = AgencyOut.model_validate(agency)
    remember_answer(session, request, context.principal, 200, answer)
    return answer


@router.delete(
    "/v1/regions/{code}/agencies/{agency_id}",
    status_code=204,
    summary="Remove an agency",
    responses={409: {"description": "The agency has internal assessments"}},
)
async def delete_agency(
    code: RegionCode, agency_id: uuid.UUID, session: DbSession, context: RequestContext
) -> Response:
    """The indicators and evidence it answered for then answer to no agency. An agency with
    internal assessments stays (409): their figures need it."""
    await service.delete(session, context, code, agency_id)
    return Response(status_code=204)


@router.get(
    "/v1/regions/{code}/agencies/comparison",
    response_model=AgencyComparison,
    summary="The region's agencies side by side on their internal assessments",
)
async def get_comparison(
    code: RegionCode,
    session: DbSession,
    principal: CurrentPrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
) -> Response:
    """Node by node, each agency's value in its internal assessment of the framework for the
    period (null: none), each agency's index, and the indicators weakest across agencies (by
    their mean as a share of the scale). Inside the region only; never an official figure."""
    answer = await service.comparison(session, principal, code, framework, period)
    return json_response(answer)


@router.get(
    "/v1/assessments/{assessment_id}/responsibilities",
    response_model=ResponsibilitiesOut,
    summary="Which agency answers for which indicator (PJ)",
)
async def get_responsibilities(
    assessment_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> ResponsibilitiesOut:
    return await service.responsibilities(session, principal, assessment_id)


@router.put(
    "/v1/assessments/{assessment_id}/responsibilities",
    response_model=ResponsibilitiesOut,
    summary="Name the agency responsible (PJ) for indicators",
)
async def put_responsibilities(
    assessment_id: uuid.UUID,
    body: ResponsibilitiesIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> ResponsibilitiesOut | JSONResponse:
    """The region's operators, in any state (no figure depends on it). Nodes not named keep
    their agency; null removes it. Answers every indicator with an agency."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    answer = await service.set_responsibilities(session, context, assessment_id, body.nodes)
    remember_answer(session, request, context.principal, 200, answer)
    return answer


@router.get(
    "/v1/assessments/{assessment_id}/agencies",
    response_model=AgencyPlan,
    summary="The assessment per agency: its indicators, values and share of the plan",
)
async def get_agency_plan(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    target: OptionalTarget = None,
    increment: IncrementQuery = None,
) -> Response:
    """Per agency with indicators (PJ), then the indicators no agency answers for: each with
    its current value and, for a `target`, the step the planner
    (`GET /v1/assessments/{id}/plan`) takes on it; per agency the steps, cost and
    contribution that fall to it, and its open evidence requests."""
    answer = await service.agency_plan(
        session, principal, assessment_id, target=target, increment=increment
    )
    return json_response(answer.model_dump(mode="json", by_alias=True))
