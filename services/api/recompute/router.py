"""Recompute runs started through the API, and their progress."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.api.recompute.schemas import JobOut, RecomputeRunIn
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal, RequestContext
from services.domain.access.policy import Action
from services.domain.recompute import repository
from services.domain.recompute.service import create_run
from services.kit.db import DbSession
from services.kit.errors import NotFound
from services.kit.idempotency import remember_answer, replayed

router = APIRouter(tags=["jobs"])


@router.post(
    "/v1/recompute-runs",
    status_code=202,
    response_model=JobOut,
    summary="Recompute many assessments (e.g. a national run) in the background",
)
async def start_recompute_run(
    body: RecomputeRunIn,
    request: Request,
    response: Response,
    session: DbSession,
    context: RequestContext,
) -> JobOut | JSONResponse:
    """Recomputes every assessment matching the filters (none: all), in batches, in the worker.
    Follow it at `GET /v1/jobs/{id}`."""
    principal = context.principal
    policy.require(principal, Action.START_RECOMPUTE_RUN)
    if (
        replay := await replayed(
            session, request, principal, location=lambda first: f"/v1/jobs/{first['id']}"
        )
    ) is not None:
        return replay
    run = await create_run(
        session,
        context,
        framework_id=body.framework,
        period=body.period,
        region_code=body.region,
        queue=request.app.state.runtime.queue,
    )
    response.headers["Location"] = f"/v1/jobs/{run.id}"
    answer = JobOut.of(run)
    remember_answer(session, request, principal, 202, answer)
    return answer


@router.get("/v1/jobs/{job_id}", response_model=JobOut, summary="Progress of a background job")
async def get_job(job_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> JobOut:
    policy.require(principal, Action.READ_JOBS)
    run = await repository.get_run(session, job_id)
    if run is None or not policy.may_follow_job(principal, run.requested_by_key):
        raise NotFound(f"No job {job_id}.")
    return JobOut.of(run)
