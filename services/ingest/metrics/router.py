from __future__ import annotations

import codecs
import csv
import io
import json
import re
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from services.ingest.metrics import repository, service
from services.ingest.metrics.catalogue import catalogue
from services.ingest.metrics.schemas import ImportSummaryOut, MetricBatch, MetricPage
from services.kit.auth import CurrentPrincipal, require_role
from services.kit.db import DbSession
from services.kit.errors import (
    ProblemError,
    Unprocessable,
    UnsupportedMediaType,
    problem_response,
)
from services.kit.idempotency import remember, replay, request_fingerprint
from services.kit.pagination import decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
WRITERS = ("super-app", "region-operator", "ministry-admin")
CSV_COLUMNS = ("region", "metric", "period", "timestamp", "value", "unit", "dimensions")
SPOOL_IN_MEMORY = 4 * 1024 * 1024
LINE_BREAK = re.compile(r"\r\n|\r|\n")

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
    principal: CurrentPrincipal,
    atomic: AtomicQuery = True,
    dry_run: DryRunQuery = False,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Import summary with created / updated / unchanged / rejected counts, and per rejected
    point its index and reason. A point with the same value as stored is unchanged; a new value
    is an update, recorded in the audit trail. `Idempotency-Key` makes a retry safe."""
    require_role(principal, *WRITERS)
    service.check_regions(principal, (point.get("region") for point in batch.points))
    fingerprint = ""
    if idempotency_key is not None and not dry_run:  # an empty key is refused, not ignored
        fingerprint = request_fingerprint(
            json.dumps(batch.points, sort_keys=True, default=str), str(atomic), str(dry_run)
        )
        replayed = await replay(session, principal.audit_id, idempotency_key, fingerprint)
        if replayed is not None:
            status, body = replayed
            return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})

    async def points() -> AsyncIterator[tuple[int, Any]]:
        for index, point in enumerate(batch.points):
            yield index, point

    summary = await service.import_points(
        session,
        principal,
        points(),
        atomic=atomic,
        dry_run=dry_run,
        queue=request.app.state.runtime.queue,
        request_id=request.state.request_id,
    )
    if idempotency_key is not None and not dry_run and summary.status != "error":
        remember(session, principal.audit_id, idempotency_key, fingerprint, 200, summary.public())
    return _respond(request, summary)


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
    principal: CurrentPrincipal,
    atomic: AtomicQuery = True,
    dry_run: DryRunQuery = False,
) -> JSONResponse:
    """The same points as a CSV body with a header row (region, metric, period or timestamp,
    value, and optional unit and dimensions as `name=value;name=value`). The body is received
    in full (spooled to disk past a few MB) before anything is stored, then loaded with COPY,
    so large files use bounded memory. Fields hold no newlines; a line is at most
    `CERDAS_CSV_MAX_LINE_BYTES` characters."""
    require_role(principal, *WRITERS)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {"text/csv", "application/csv"}:
        raise UnsupportedMediaType(f"Send the points as text/csv, not {content_type or 'nothing'}.")
    settings = request.app.state.runtime.settings
    spool = await receive_csv(request, settings.csv_max_line_bytes)
    summary = await service.import_points(
        session,
        principal,
        _csv_points(spool),
        atomic=atomic,
        dry_run=dry_run,
        queue=request.app.state.runtime.queue,
        request_id=request.state.request_id,
    )
    return _respond(request, summary)


async def receive_csv(request: Request, max_line: int) -> IO[bytes]:
    """The whole CSV body, spooled (memory, then a temporary file) before any database work.

    While it arrives it is checked as UTF-8 text whose lines are at most ``max_line``
    characters and hold no NUL, so a malformed body is refused before anything is stored and
    no database connection waits on a slow client.
    """
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    line, line_length, after_cr = 1, 0, False
    try:
        async for chunk in request.stream():
            spool.write(chunk)
            text = decoder.decode(chunk)
            if after_cr and text.startswith("\n"):
                text = text[1:]  # the \n of a \r\n split between two chunks
            if text:
                after_cr = text.endswith("\r")
            if "\x00" in text:
                at = line + len(LINE_BREAK.findall(text[: text.index("\x00")]))
                raise Unprocessable(f"CSV line {at} contains a NUL character.")
            # Lines end as the reader below splits them: \n, \r\n or a lone \r.
            *complete, rest = LINE_BREAK.split(text)
            for segment in complete:
                if line_length + len(segment) > max_line:
                    raise _line_too_long(line, max_line)
                line, line_length = line + 1, 0
            line_length += len(rest)
            if line_length > max_line:
                raise _line_too_long(line, max_line)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        spool.close()
        raise Unprocessable("The CSV body is not UTF-8 text.") from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _line_too_long(line: int, max_line: int) -> Unprocessable:
    return Unprocessable(
        f"CSV line {line} is longer than {max_line:,} characters (a field holds no newline; "
        "is this a CSV file?).",
        limit=max_line,
    )


async def _csv_lines(spool: IO[bytes]) -> AsyncIterator[str]:
    with io.TextIOWrapper(spool, encoding="utf-8-sig", newline="") as text:
        for line in text:
            yield line.rstrip("\r\n")


async def _csv_points(spool: IO[bytes]) -> AsyncIterator[tuple[int, Any]]:
    header: list[str] | None = None
    row_number = 0
    async for line in _csv_lines(spool):
        if not line.strip():
            continue
        fields = next(csv.reader([line]))
        if header is None:
            header = [name.strip().lower() for name in fields]
            unknown = sorted(set(header) - set(CSV_COLUMNS))
            if unknown or not {"region", "metric", "value"} <= set(header):
                raise Unprocessable(
                    f"CSV header must name region, metric, period or timestamp, value "
                    f"(optional unit, dimensions); got {', '.join(header)}",
                )
            continue
        row_number += 1
        yield row_number, _csv_point(header, fields)
    if header is None:
        raise Unprocessable("The CSV body is empty: expected a header row and points.")


def _csv_point(header: list[str], fields: list[str]) -> dict[str, Any] | str:
    if len(fields) != len(header):
        return f"row has {len(fields)} fields, the header {len(header)}"
    point: dict[str, Any] = {
        name: value.strip() for name, value in zip(header, fields, strict=True) if value.strip()
    }
    dimensions = point.pop("dimensions", None)
    if dimensions:
        pairs = [pair.split("=", 1) for pair in dimensions.split(";") if pair]
        point["dimensions"] = {pair[0].strip(): pair[-1].strip() for pair in pairs}
    return point


@router.get("", response_model=MetricPage, summary="Stored metric points")
async def list_metrics(
    session: DbSession,
    principal: CurrentPrincipal,
    region: Annotated[str | None, Query(examples=["32.71"])] = None,
    metric: Annotated[str | None, Query(examples=["integrated_apps"])] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MetricPage:
    after = decode_cursor(cursor, int)[0] if cursor else None
    rows = await repository.list_points(
        session, region=region, metric=metric, year=year, after_id=after, limit=limit + 1
    )
    items = [
        {
            "id": row.id,
            "region": row.region_code,
            "metric": row.metric,
            "period": row.period,
            "dimensions": row.dimensions,
            "value": format(row.value.normalize(), "f"),
            "updated_at": row.updated_at.isoformat(),
        }
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > limit else None
    return MetricPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/catalogue", summary="The metrics that may be pushed")
async def metric_catalogue() -> list[dict[str, Any]]:
    return [definition.public() for definition in catalogue().values()]
