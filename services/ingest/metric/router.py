"""Metric endpoints: push points as a JSON batch or a CSV file, list them, read the catalogue."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import IO, Annotated, Any

import pydantic_core
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import policy
from services.domain.access.dependencies import RequestContext
from services.domain.access.policy import Action
from services.domain.access.principal import Context
from services.ingest.metric import service
from services.ingest.metric.csv_upload import csv_points, receive_csv
from services.ingest.metric.schemas import (
    ImportSummaryOut,
    MetricBatch,
    MetricCatalogue,
    MetricPage,
)
from services.kit.db import DbSession
from services.kit.errors import ProblemError, UnsupportedMediaType, problem_response
from services.kit.idempotency import remember, replay, request_fingerprint
from services.kit.pagination import decode_cursor


class _JsonRequest(Request):
    """A request whose JSON body pydantic's parser reads: the same values as ``json.loads``
    (NaN, big integers and duplicate names included) in less than half the time, which for a
    batch of thousands of points is most of what reading it costs."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError:
                # Malformed (or not UTF-8): json.loads refuses it as before, and FastAPI
                # answers with the position it names.
                self._json = json.loads(body)
        return self._json


class _JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_json(request: Request) -> Response:
            return await handle(_JsonRequest(request.scope, request.receive))

        return handle_json


router = APIRouter(prefix="/v1/metrics", tags=["metrics"], route_class=_JsonRoute)

AtomicQuery = Annotated[
    bool, Query(description="All-or-nothing (default): any rejected point stores nothing")
]
DryRunQuery = Annotated[bool, Query(description="Validate and report; store nothing")]


def _respond(request: Request, summary: service.ImportSummary) -> JSONResponse:
    body = summary.public()
    if summary.status == "error":
        # The import summary rides along as extension members; "status" stays the HTTP one.
        del body["status"]
        problem = ProblemError(
            f"{summary.rejected} of {summary.received} points were rejected; nothing was "
            "stored (atomic batch: fix them, or send atomic=false to store the valid points).",
            status=422,
            code="batch-rejected",
            title="Batch rejected",
            **body,
        )
        return problem_response(problem, request.url.path)
    return JSONResponse(body)


@router.post(
    ":batch",
    response_model=ImportSummaryOut,
    summary="Push up to 5,000 metric points",
    responses={
        403: {"description": "A point is for a region the key may not write; nothing stored"},
        422: {"description": "Rejected points (atomic), or an Idempotency-Key reused"},
    },
)
async def push_batch(
    request: Request,
    batch: MetricBatch,
    session: DbSession,
    context: RequestContext,
    atomic: AtomicQuery = True,
    dry_run: DryRunQuery = False,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Import summary with created / updated / unchanged / rejected counts, and per rejected
    point its index and reason. A point with the same value as stored is unchanged; a new value
    is an update, recorded in the audit trail. `Idempotency-Key` makes a retry safe."""
    principal = context.principal
    policy.require(principal, Action.PUSH_METRICS)
    # Each region once, in the order sent (the 403 names the first the key may not write).
    sent_regions = dict.fromkeys(
        region for point in batch.points if isinstance(region := point.get("region"), str)
    )
    service.check_regions(principal, sent_regions)
    fingerprint = ""
    if idempotency_key is not None and not dry_run:  # an empty key is refused, not ignored
        fingerprint = request_fingerprint(
            json.dumps(batch.points, sort_keys=True, default=str), str(atomic), str(dry_run)
        )
        if (
            replayed := await _replayed(session, context, idempotency_key, fingerprint)
        ) is not None:
            return replayed

    async def points() -> AsyncIterator[tuple[int, Any]]:
        for index, point in enumerate(batch.points):
            yield index, point

    summary = await service.import_points(
        session,
        context,
        points(),
        atomic=atomic,
        dry_run=dry_run,
        queue=request.app.state.runtime.queue,
        sent_regions=sent_regions.keys(),
    )
    _remember(session, context, idempotency_key, fingerprint, summary)
    return _respond(request, summary)


async def _replayed(
    session: AsyncSession, context: Context, key: str, fingerprint: str
) -> JSONResponse | None:
    """The first answer to this key, if the caller sent the same request with it before."""
    found = await replay(session, context.principal.audit_id, key, fingerprint)
    if found is None:
        return None
    status, body = found
    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})


def _remember(
    session: AsyncSession,
    context: Context,
    key: str | None,
    fingerprint: str,
    summary: service.ImportSummary,
) -> None:
    """Keep a stored import's answer for its key (a dry run or a refused batch stored nothing,
    so a retry runs again)."""
    if key is not None and not summary.dry_run and summary.status != "error":
        remember(session, context.principal.audit_id, key, fingerprint, 200, summary.public())


@router.post(
    ":import",
    response_model=ImportSummaryOut,
    summary="Bulk load metric points from CSV (streamed)",
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "region,metric,period,value,dimensions\n"
                    "32.71,integrated_apps,2024-12,148,\n"
                    "32.16,service_transactions,2024-11,5230,service=adminduk\n",
                }
            },
            "required": True,
        }
    },
)
async def import_csv(
    request: Request,
    session: DbSession,
    context: RequestContext,
    atomic: AtomicQuery = True,
    dry_run: DryRunQuery = False,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """The same points as a CSV body with a header row (region, metric, period or timestamp,
    value, and optional unit and dimensions as `name=value;name=value`). The body is received
    in full (spooled to disk past a few MB) before anything is stored, then loaded with COPY,
    so large files use bounded memory. Fields hold no newlines; a line is at most
    `CERDAS_CSV_MAX_LINE_BYTES` characters. `Idempotency-Key` makes a retry safe, as for
    `:batch` (the same key with another body is refused)."""
    policy.require(context.principal, Action.PUSH_METRICS)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {"text/csv", "application/csv"}:
        raise UnsupportedMediaType(f"Send the points as text/csv, not {content_type or 'nothing'}.")
    settings = request.app.state.runtime.settings
    spool = await receive_csv(request, settings.csv_max_line_bytes)
    fingerprint = ""
    if idempotency_key is not None and not dry_run:
        body_hash = await asyncio.to_thread(_digest, spool)
        fingerprint = request_fingerprint("csv", body_hash, str(atomic), str(dry_run))
        if (
            replayed := await _replayed(session, context, idempotency_key, fingerprint)
        ) is not None:
            spool.close()
            return replayed
    summary = await service.import_points(
        session,
        context,
        csv_points(spool),
        atomic=atomic,
        dry_run=dry_run,
        queue=request.app.state.runtime.queue,
    )
    _remember(session, context, idempotency_key, fingerprint, summary)
    return _respond(request, summary)


def _digest(spool: IO[bytes]) -> str:
    """SHA-256 of the spooled body, read back from its start (and left there)."""
    digest = hashlib.sha256()
    spool.seek(0)
    while chunk := spool.read(1 << 20):
        digest.update(chunk)
    spool.seek(0)
    return digest.hexdigest()


@router.get("", response_model=MetricPage, summary="Stored metric points")
async def list_metrics(
    session: DbSession,
    context: RequestContext,
    region: Annotated[str | None, Query(examples=["32.71"])] = None,
    metric: Annotated[str | None, Query(examples=["integrated_apps"])] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MetricPage:
    after = decode_cursor(cursor, int)[0] if cursor else None
    return await service.page(
        session, context, region=region, metric=metric, year=year, after_id=after, limit=limit
    )


@router.get(
    "/catalogue",
    response_model=MetricCatalogue,
    summary="The metrics that may be pushed",
)
async def metric_catalogue() -> MetricCatalogue:
    return MetricCatalogue(items=service.definitions())
