"""Assessment workflow endpoints: open, fill in, review, request evidence, record the assessor's
output, verify, publish.

Every write accepts ``Idempotency-Key``: a retry whose first answer was lost gets that answer.
The workflow's writes answer with the assessment as ``GET /v1/assessments/{id}`` shows it."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.assessment import service
from services.api.assessment.schemas import (
    AssessmentIn,
    AssessorOutputsIn,
    AssessorOutputsOut,
    AssignIn,
    AssignmentOut,
    EvidenceRequestIn,
    EvidenceRequestOut,
    EvidenceRequestPage,
    InputsIn,
    InputsOut,
    OfficialResultsIn,
    TransitionIn,
)
from services.api.result.schemas import AssessmentOut
from services.api.result.service import assessor_output_out, current_assessment
from services.domain.access.dependencies import RequestContext
from services.domain.access.principal import Context
from services.kit import results_cache
from services.kit.db import DbSession, after_commit
from services.kit.idempotency import remember_answer, replayed

router = APIRouter(tags=["workflow"])


def _at(assessment_id: object) -> str:
    return f"/v1/assessments/{assessment_id}"


async def _answer(
    session: AsyncSession,
    request: Request,
    context: Context,
    status: int,
    assessment_id: uuid.UUID,
) -> AssessmentOut:
    """The assessment as it now stands (as ``GET /v1/assessments/{id}`` shows it), remembered
    for the request's Idempotency-Key (if one was sent) in this transaction."""
    answer = await current_assessment(session, assessment_id)
    remember_answer(session, request, context.principal, status, answer)
    return answer


@router.post(
    "/v1/assessments",
    status_code=201,
    response_model=AssessmentOut,
    summary="Open an assessment (draft)",
)
async def open_assessment(
    body: AssessmentIn,
    request: Request,
    response: Response,
    session: DbSession,
    context: RequestContext,
) -> AssessmentOut | JSONResponse:
    if (
        replay := await replayed(
            session, request, context.principal, location=lambda first: _at(first["id"])
        )
    ) is not None:
        return replay
    assessment = await service.create(
        session,
        context,
        region=body.region,
        family=body.family,
        framework_id=body.framework,
        period=body.period,
        stage=body.stage,
        agency_id=body.agency,
    )
    response.headers["Location"] = _at(assessment.id)
    return await _answer(session, request, context, 201, assessment.id)


@router.put(
    "/v1/assessments/{assessment_id}/inputs",
    response_model=InputsOut,
    summary="Enter or verify values",
)
async def put_inputs(
    assessment_id: uuid.UUID,
    body: InputsIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> InputsOut | JSONResponse:
    """Both values of a leaf are kept; results use the verified value where there is one."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    assessment, written = await service.set_inputs(
        session,
        context,
        assessment_id,
        body.values,
        body.note,
        request.app.state.runtime.queue,
        sources={node: (given.reference, given.as_of) for node, given in body.sources.items()},
    )
    answer = InputsOut(
        **(await current_assessment(session, assessment.id)).model_dump(),
        written=written,
        nodes=sorted(body.values),
    )
    remember_answer(session, request, context.principal, 200, answer)
    return answer


@router.put(
    "/v1/assessments/{assessment_id}/official-results",
    response_model=AssessmentOut,
    summary="Import official results (components, domains, index) from a results letter",
)
async def put_official_results(
    assessment_id: uuid.UUID,
    body: OfficialResultsIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AssessmentOut | JSONResponse:
    """Ministry-admin only. Each value stands in for its node, marked `value_from: official`
    in results, until verified values exist for the leaves under it. Regions and assessors
    enter leaf values only."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    assessment = await service.set_official_results(
        session, context, assessment_id, body.values, body.source, request.app.state.runtime.queue
    )
    return await _answer(session, request, context, 200, assessment.id)


@router.put(
    "/v1/assessments/{assessment_id}/assessor-output",
    response_model=AssessorOutputsOut,
    summary="Record the assessor's output per node (evidence, interview, approval, notes)",
)
async def put_assessor_output(
    assessment_id: uuid.UUID,
    body: AssessorOutputsIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AssessorOutputsOut | JSONResponse:
    """Assigned assessor or ministry-admin, while the assessment is in review. Fields left out
    keep their value; null clears one. The region reads a node's output once the assessment is
    published, or before if `shared_with_region` is true. An unknown node is 422 and nothing
    is written."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    # Only the fields sent: one left out keeps its value, an explicit null clears it.
    given = {node: fields.model_dump(exclude_unset=True) for node, fields in body.nodes.items()}
    written = await service.set_assessor_output(session, context, assessment_id, given)
    answer = AssessorOutputsOut(
        assessment_id=assessment_id,
        nodes={node_id: assessor_output_out(row) for node_id, row in written.items()},
    )
    remember_answer(session, request, context.principal, 200, answer)
    return answer


@router.post(
    "/v1/assessments/{assessment_id}/transitions",
    response_model=AssessmentOut,
    summary="Move through the workflow",
)
async def post_transition(
    assessment_id: uuid.UUID,
    body: TransitionIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AssessmentOut | JSONResponse:
    """draft → submitted → in_review ⇄ evidence_requested; in_review → verified → published.
    409 for a move the current state does not allow, 403 for a role that may not make it.
    With `Idempotency-Key`, a retry whose first answer was lost gets that answer, not a 409."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    runtime = request.app.state.runtime
    assessment = await service.transition(
        session, context, assessment_id, body.to, body.reason, runtime.queue
    )

    async def invalidate() -> None:  # who may see which results has changed
        await results_cache.bump(runtime.engine)

    after_commit(session, invalidate)
    return await _answer(session, request, context, 200, assessment.id)


@router.post(
    "/v1/assessments/{assessment_id}/assessors",
    status_code=201,
    response_model=AssignmentOut,
    summary="Assign an assessor: a key, or a person by their SSO subject (sub)",
)
async def post_assessor(
    assessment_id: uuid.UUID,
    body: AssignIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> AssignmentOut | JSONResponse:
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    if body.key_id is not None:
        await service.assign(session, context, assessment_id, body.key_id)
        answer = AssignmentOut(assessment_id=assessment_id, key_id=body.key_id)
    else:
        assert body.sub is not None  # AssignIn holds one of the two
        person = await service.assign_person(
            session,
            context,
            assessment_id,
            request.app.state.runtime.settings.oidc_issuers,
            subject=body.sub,
            issuer=body.issuer,
        )
        answer = AssignmentOut(
            assessment_id=assessment_id,
            person_id=person.id,
            issuer=person.issuer,
            sub=person.subject,
        )
    remember_answer(session, request, context.principal, 201, answer)
    return answer


@router.post(
    "/v1/assessments/{assessment_id}/evidence-requests",
    status_code=201,
    response_model=EvidenceRequestOut,
    summary="Ask the region for more evidence (pendalaman)",
)
async def post_evidence_request(
    assessment_id: uuid.UUID,
    body: EvidenceRequestIn,
    request: Request,
    session: DbSession,
    context: RequestContext,
) -> EvidenceRequestOut | JSONResponse:
    """Moves the assessment to evidence_requested; the region answers by uploading evidence
    with `request_id`, then moves it back to in_review."""
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    evidence_request = await service.request_evidence(
        session,
        context,
        assessment_id,
        body.node_ids,
        body.message,
        body.due_date,
        request.app.state.runtime.queue,
    )
    named = await service.requesters(session, [evidence_request])
    answer = EvidenceRequestOut.model_validate(evidence_request).model_copy(
        update={"requested_by": named.get(evidence_request.id)}
    )
    remember_answer(session, request, context.principal, 201, answer)
    return answer


@router.get(
    "/v1/assessments/{assessment_id}/evidence-requests",
    response_model=EvidenceRequestPage,
    summary="Evidence requests",
)
async def list_evidence_requests(
    assessment_id: uuid.UUID,
    session: DbSession,
    context: RequestContext,
    status: Annotated[Literal["open", "answered", "all"], Query()] = "open",
    agency: Annotated[
        uuid.UUID | None,
        Query(description="Only requests naming an indicator this agency answers for (PJ)"),
    ] = None,
) -> EvidenceRequestPage:
    answered = {"open": False, "answered": True, "all": None}[status]
    rows = await service.evidence_requests(
        session, context, assessment_id, answered=answered, agency=agency
    )
    named = await service.requesters(session, rows)
    return EvidenceRequestPage(
        items=[
            EvidenceRequestOut.model_validate(row).model_copy(
                update={"requested_by": named.get(row.id)}
            )
            for row in rows
        ]
    )
