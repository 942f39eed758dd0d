from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.kit.db import ping
from services.kit.errors import ProblemError, problem_response
from services.kit.migrate import current_revision, head_revision
from services.kit.runtime import Runtime

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, str] = Field(
        description="database, migrations, redis, (in `cerdas serve`) worker and (with the s3 "
        "evidence backend) storage: ok, or why not",
        examples=[{"database": "ok", "migrations": "ok", "redis": "ok", "worker": "ok"}],
    )


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Database and Redis reachable, schema at the newest migration",
    responses={503: {"description": "A dependency is not ready; the body says which"}},
)
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, str] = {}
    try:
        await ping(runtime.engine)
        checks["database"] = "ok"
        current, head = await current_revision(runtime.engine), head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, head is {head}"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["redis"] = "ok" if await runtime.queue.ping() else "unreachable"
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:  # the in-process worker of `cerdas serve`
        checks["worker"] = "ok" if worker.state == "running" else worker.state
    storage = getattr(request.app.state, "storage", None)
    if storage is not None and (reached := await storage.check()) is not None:
        checks["storage"] = reached  # an object store: its bucket answers (a HEAD, 2 s at most)
    if all(value == "ok" for value in checks.values()):
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    failing = ", ".join(f"{name}: {value}" for name, value in checks.items() if value != "ok")
    problem = ProblemError(failing, status=503, code="not-ready", title="Not ready", checks=checks)
    return problem_response(problem, request.url.path)
