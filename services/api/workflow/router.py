"""Assessment workflow endpoints: open, fill in, review, request evidence, verify, publish."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.workflow import service
from services.kit import results_cache
from services.kit.auth import CurrentPrincipal, Principal
from services.kit.db import DbSession, after_commit
from services.kit.errors import NotFound
from services.kit.idempotency import remember_answer, replayed
from services.models import ASSESSMENT_STATES, Assessment, EvidenceRequest

router = APIRouter(tags=["workflow"])
State = Literal["draft", "submitted", "in_review", "evidence_requested", "verified", "published"]
assert set(ASSESSMENT_STATES) == set(State.__args__)  # type: ignore[attr-defined]


class AssessmentIn(BaseModel):
    region: str = Field(examples=["32.71"])
    framework: str = Field(examples=["spbe-2020"])
    period: int = Field(ge=2000, le=2100, examples=[2024])
    stage: str = Field(default="final", max_length=16)


class InputsIn(BaseModel):
    values: dict[str, Any] = Field(
        description="Node id → value (a decimal, a list for programme scores, null to clear). "
        "Region operators write the self-assessed value; assessors the verified one.",
        examples=[{"I1": 3, "I2": 4}],
    )
    note: str | None = Field(default=None, max_length=2000)


class TransitionIn(BaseModel):
    to: State
    reason: str | None = Field(
        default=None, max_length=2000, description="Required to reopen a published assessment"
    )


class AssignIn(BaseModel):
    key_id: uuid.UUID


class EvidenceRequestIn(BaseModel):
    node_ids: list[str] = Field(min_length=1, max_length=200, examples=[["I11", "I12"]])
    message: str = Field(min_length=1, max_length=4000)
    due_date: date | None = None


def _state(assessment: Assessment) -> dict[str, Any]:
    return {
        "id": str(assessment.id),
        "region": assessment.region_code,
        "framework": assessment.framework_id,
        "period": assessment.period,
        "stage": assessment.stage,
        "state": assessment.state,
        "input_revision": assessment.input_revision,
    }


def _answer(
    session: AsyncSession,
    request: Request,
    principal: Principal,
    status: int,
    answer: dict[str, Any],
) -> dict[str, Any]:
    """``answer``, remembered for its Idempotency-Key (if one was sent) in this transaction."""
    remember_answer(session, request, principal, status, answer)
    return answer


def _request(evidence_request: EvidenceRequest) -> dict[str, Any]:
    return {
        "id": str(evidence_request.id),
        "assessment_id": str(evidence_request.assessment_id),
        "node_ids": evidence_request.node_ids,
        "message": evidence_request.message,
        "due_date": evidence_request.due_date.isoformat() if evidence_request.due_date else None,
        "created_at": evidence_request.created_at.isoformat(),
        "answered_at": evidence_request.answered_at.isoformat()
        if evidence_request.answered_at
        else None,
        "answered_by_item": str(evidence_request.answered_by_item)
        if evidence_request.answered_by_item
        else None,
    }


@router.post(
    "/v1/assessments", status_code=201, response_model=None, summary="Open an assessment (draft)"
)
async def open_assessment(
    body: AssessmentIn, request: Request, session: DbSession, principal: CurrentPrincipal
) -> dict[str, Any] | JSONResponse:
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    assessment = await service.create(
        session,
        principal,
        region=body.region,
        framework_id=body.framework,
        period=body.period,
        stage=body.stage,
        request_id=request.state.request_id,
    )
    return _answer(session, request, principal, 201, _state(assessment))


@router.put(
    "/v1/assessments/{assessment_id}/inputs",
    response_model=None,
    summary="Enter or verify values",
)
async def put_inputs(
    assessment_id: uuid.UUID,
    body: InputsIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> dict[str, Any] | JSONResponse:
    """Both values of a leaf are kept; results use the verified value where there is one."""
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    assessment, column = await service.set_inputs(
        session,
        principal,
        assessment_id,
        body.values,
        body.note,
        request.app.state.runtime.queue,
        request.state.request_id,
    )
    answer = _state(assessment) | {"written": column, "nodes": sorted(body.values)}
    return _answer(session, request, principal, 200, answer)


@router.post(
    "/v1/assessments/{assessment_id}/transitions",
    response_model=None,
    summary="Move through the workflow",
)
async def post_transition(
    assessment_id: uuid.UUID,
    body: TransitionIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> dict[str, Any] | JSONResponse:
    """draft → submitted → in_review ⇄ evidence_requested; in_review → verified → published.
    409 for a move the current state does not allow, 403 for a role that may not make it.
    With `Idempotency-Key`, a retry whose first answer was lost gets that answer, not a 409."""
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    runtime = request.app.state.runtime
    assessment = await service.transition(
        session,
        principal,
        assessment_id,
        body.to,
        body.reason,
        runtime.queue,
        request.state.request_id,
    )

    async def invalidate() -> None:  # who may see which results has changed
        await results_cache.bump(runtime.engine)

    after_commit(session, invalidate)
    return _answer(session, request, principal, 200, _state(assessment))


@router.post(
    "/v1/assessments/{assessment_id}/assessors",
    status_code=201,
    response_model=None,
    summary="Assign an assessor key",
)
async def post_assessor(
    assessment_id: uuid.UUID,
    body: AssignIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> dict[str, Any] | JSONResponse:
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    await service.assign(session, principal, assessment_id, body.key_id, request.state.request_id)
    answer = {"assessment_id": str(assessment_id), "key_id": str(body.key_id)}
    return _answer(session, request, principal, 201, answer)


@router.post(
    "/v1/assessments/{assessment_id}/evidence-requests",
    status_code=201,
    response_model=None,
    summary="Ask the region for more evidence (pendalaman)",
)
async def post_evidence_request(
    assessment_id: uuid.UUID,
    body: EvidenceRequestIn,
    request: Request,
    session: DbSession,
    principal: CurrentPrincipal,
) -> dict[str, Any] | JSONResponse:
    """Moves the assessment to evidence_requested; the region answers by uploading evidence
    with `request_id`, then moves it back to in_review."""
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    evidence_request = await service.request_evidence(
        session,
        principal,
        assessment_id,
        body.node_ids,
        body.message,
        body.due_date,
        request.app.state.runtime.queue,
        request.state.request_id,
    )
    await session.refresh(evidence_request)
    return _answer(session, request, principal, 201, _request(evidence_request))


@router.get("/v1/assessments/{assessment_id}/evidence-requests", summary="Evidence requests")
async def list_evidence_requests(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    status: Annotated[Literal["open", "answered", "all"], Query()] = "open",
) -> list[dict[str, Any]]:
    assessment = await session.get(Assessment, assessment_id)
    if assessment is None:
        raise NotFound(f"No assessment {assessment_id}.")
    await service.check_scope(session, principal, assessment)
    query = select(EvidenceRequest).where(EvidenceRequest.assessment_id == assessment_id)
    if status == "open":
        query = query.where(EvidenceRequest.answered_at.is_(None))
    elif status == "answered":
        query = query.where(EvidenceRequest.answered_at.is_not(None))
    rows = (await session.scalars(query.order_by(EvidenceRequest.created_at))).all()
    return [_request(row) for row in rows]
