"""Recompute runs started through the API, and their progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.kit.auth import CurrentPrincipal, require_role
from services.kit.db import DbSession, after_commit
from services.kit.errors import NotFound
from services.kit.idempotency import remember_answer, replayed
from services.kit.outbox import RUN_JOB, create_recompute_run
from services.models import RecomputeRun, Region
from services.scoring.frameworks import registry

router = APIRouter(tags=["jobs"])


class RecomputeRunIn(BaseModel):
    framework: str | None = Field(default=None, examples=["spbe-2020"])
    period: Annotated[int | None, Field(ge=2000, le=2100, examples=[2024])] = None
    region: str | None = Field(default=None, examples=["32.71"])


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str = "recompute-run"
    state: str = Field(description="queued, running, done or failed")
    framework: str | None
    period: int | None
    region: str | None
    total: int
    done: int
    failed: int
    requested_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: RecomputeRun) -> JobOut:
        return cls(
            id=run.id,
            state=run.state,
            framework=run.framework_id,
            period=run.period,
            region=run.region_code,
            total=run.total,
            done=run.done,
            failed=run.failed,
            requested_by=run.requested_by,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
        )


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
    principal: CurrentPrincipal,
) -> JobOut | JSONResponse:
    """Recomputes every assessment matching the filters (none: all), in batches, in the worker.
    Follow it at `GET /v1/jobs/{id}`."""
    require_role(principal, "ministry-admin")
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    if body.framework is not None and body.framework not in registry():
        raise NotFound(f"No framework {body.framework!r}.")
    if body.region is not None and await session.get(Region, body.region) is None:
        raise NotFound(f"No region with Kemendagri code {body.region!r}.")
    run = await create_recompute_run(
        session,
        framework_id=body.framework,
        period=body.period,
        region_code=body.region,
        requested_by=principal.name,
    )
    await session.refresh(run)
    queue = request.app.state.runtime.queue

    async def start() -> None:
        await queue.enqueue(RUN_JOB, str(run.id), job_id=f"run:{run.id}:start")

    after_commit(session, start)
    response.headers["Location"] = f"/v1/jobs/{run.id}"
    answer = JobOut.of(run)
    remember_answer(session, request, principal, 202, answer)
    return answer


@router.get("/v1/jobs/{job_id}", response_model=JobOut, summary="Progress of a background job")
async def get_job(job_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal) -> JobOut:
    run = await session.get(RecomputeRun, job_id)
    if run is None:
        raise NotFound(f"No job {job_id}.")
    return JobOut.of(run)
