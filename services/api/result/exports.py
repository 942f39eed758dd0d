"""CSV and XLSX exports of rankings and results: the same decimals as the JSON, streamed."""

from __future__ import annotations

import csv
import io
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from services.api.agency import service as agency_service
from services.api.region.router import REGION_CODE
from services.api.result import service
from services.api.result.router import (
    FrameworkQuery,
    IncrementQuery,
    PeriodQuery,
    ProvinceQuery,
    TargetQuery,
)
from services.api.result.schemas import Plan, PlanOption
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal, MaybePrincipal
from services.kit.db import DbSession

router = APIRouter(tags=["exports"])
Format = Annotated[Literal["csv", "xlsx"], Query(description="csv or xlsx")]
Language = Annotated[Literal["en", "id"], Query(description="Column headers: en or id")]

RANKING_COLUMNS = (
    ("rank", "Rank", "Peringkat"),
    ("region", "Region code", "Kode wilayah"),
    ("name", "Region", "Nama wilayah"),
    ("province_code", "Province code", "Kode provinsi"),
    ("index", "Index", "Indeks"),
    ("predicate", "Predicate", "Predikat"),
    ("previous_rank", "Previous rank", "Peringkat sebelumnya"),
    ("movement", "Movement", "Perubahan peringkat"),
    ("previous_index", "Previous index", "Indeks sebelumnya"),
    ("improvement", "Improvement", "Tingkat improvement"),
)
# Whose assessment a results export is: empty for the region's official one, else the agency
# (OPD) evaluated internally.
INTERNAL_COLUMN = ("agency", "Internal evaluation of (OPD)", "Evaluasi internal perangkat daerah")
RESULT_COLUMNS = (
    ("id", "Node", "Kode"),
    ("name", "Name", "Nama"),
    ("parent", "Parent", "Induk"),
    ("value", "Value", "Nilai"),
    ("predicate", "Predicate", "Predikat"),
    ("weight", "Weight", "Bobot"),
    ("contribution", "Contribution", "Kontribusi"),
    ("source", "Source", "Sumber"),
    INTERNAL_COLUMN,
    # The assessor's output, where the caller may read it (services.domain.access.policy).
    ("evidence_uploaded", "Evidence uploaded", "Bukti diunggah"),
    ("interview_confirmed", "Confirmed in interview", "Terkonfirmasi wawancara"),
    ("approved", "Approved", "Disetujui"),
    ("catatan", "Note", "Catatan"),
    ("rekomendasi", "Recommendation", "Rekomendasi"),
)
PLAN_COLUMNS = (
    # 1 is the plan, 2… the alternatives of the same cost.
    ("option", "Option", "Opsi"),
    ("reachable", "Target reached", "Target tercapai"),
    ("node", "Node", "Kode"),
    ("name", "Name", "Nama"),
    ("from", "From", "Dari"),
    ("to", "To", "Menjadi"),
    ("steps", "Steps", "Jumlah langkah"),
    ("cost", "Cost", "Biaya"),
    ("contribution", "Contribution", "Kontribusi"),
    ("total_cost", "Total cost", "Total biaya"),
    ("index", "Index after", "Indeks setelahnya"),
    ("predicate", "Predicate after", "Predikat setelahnya"),
)
# The agencies side by side: these, then one column per agency (its short name, else name).
COMPARISON_COLUMNS = (
    ("id", "Node", "Kode"),
    ("name", "Name", "Nama"),
    ("parent", "Parent", "Induk"),
)
AGENCY_PLAN_COLUMNS = (
    ("agency", "Agency (PJ)", "Perangkat daerah (PJ)"),
    ("node", "Node", "Kode"),
    ("name", "Name", "Nama"),
    ("value", "Value now", "Nilai saat ini"),
    ("from", "From", "Dari"),
    ("to", "To", "Menjadi"),
    ("steps", "Steps", "Jumlah langkah"),
    ("cost", "Cost", "Biaya"),
    ("contribution", "Contribution", "Kontribusi"),
)
ASSESSOR_FIELDS = ("evidence_uploaded", "interview_confirmed", "approved", "catatan", "rekomendasi")
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# What the document says a 200 holds: the file, not JSON.
EXPORT_CONTENT: dict[str, Any] = {
    "description": "The file, as `format` asks",
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        MEDIA["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
    },
}
RESULT_FIELDS = {key for key, _, _ in RESULT_COLUMNS} - set(ASSESSOR_FIELDS) - {"agency"}
NUMERIC = {
    "index",
    "previous_index",
    "improvement",
    "value",
    "weight",
    "contribution",
    "from",
    "to",
    "cost",
    "total_cost",
}
# The key of an agency's value column in the comparison export.
AGENCY_VALUE = "agency:"
# Free text typed by people: always a string in a workbook, never read as a formula.
FREE_TEXT = {"catatan", "rekomendasi"}


def _headers(columns: Sequence[tuple[str, str, str]], lang: str) -> list[str]:
    return [english if lang == "en" else indonesian for _, english, indonesian in columns]


async def _csv(
    columns: Sequence[tuple[str, str, str]], lang: str, rows: Iterable[dict[str, Any]]
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_headers(columns, lang))
    for count, row in enumerate(rows, start=1):
        writer.writerow([_csv_cell(row[key]) for key, _, _ in columns])
        if count % 500 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _xlsx_cell(sheet: Any, key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in NUMERIC or key.startswith(AGENCY_VALUE):
        # Numbers as numbers (Excel computes with them), written from the same decimal text.
        return Decimal(value)
    if key in FREE_TEXT:
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"  # openpyxl would make "=…" a formula
        return cell
    return value


async def _xlsx(
    columns: Sequence[tuple[str, str, str]], lang: str, title: str, rows: Iterable[dict[str, Any]]
) -> AsyncIterator[bytes]:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])
    sheet.append(_headers(columns, lang))
    for row in rows:
        sheet.append([_xlsx_cell(sheet, key, row[key]) for key, _, _ in columns])
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        workbook.save(spool)
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk


def _download(body: AsyncIterator[bytes], fmt: str, filename: str) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'},
    )


@router.get(
    "/v1/rankings/export",
    summary="A ranking as CSV or XLSX",
    response_class=StreamingResponse,
    responses={200: EXPORT_CONTENT},
)
async def export_ranking(
    session: DbSession,
    principal: MaybePrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    province: ProvinceQuery = None,
    format: Format = "csv",
    lang: Language = "en",
) -> StreamingResponse:
    published_only = not policy.sees_unpublished_figures(principal)
    ranking = await service.ranking(session, framework, period, province, published_only)
    items = [item.model_dump() for item in ranking.items]
    name = f"ranking-{framework}-{period}" + (f"-{province}" if province else "")
    body = (
        _csv(RANKING_COLUMNS, lang, items)
        if format == "csv"
        else _xlsx(RANKING_COLUMNS, lang, f"{framework} {period}", items)
    )
    return _download(body, format, name)


@router.get(
    "/v1/assessments/{assessment_id}/results/export",
    summary="Results as CSV or XLSX",
    response_class=StreamingResponse,
    responses={200: EXPORT_CONTENT},
)
async def export_results(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: MaybePrincipal,
    format: Format = "csv",
    lang: Language = "en",
) -> StreamingResponse:
    assessment, agency, nodes = await service.export_rows(session, assessment_id, principal)
    # An internal assessment says whose it is on every row; the official one leaves it empty.
    whose = None if agency is None else agency.short_name or agency.name
    rows = [
        node.model_dump(include=RESULT_FIELDS)
        | (
            node.assessor.model_dump(include=set(ASSESSOR_FIELDS))
            if node.assessor
            else dict.fromkeys(ASSESSOR_FIELDS)
        )
        | {"agency": whose}
        for node in nodes
    ]
    name = f"results-{assessment.framework_id}-{assessment.region_code}-{assessment.period}"
    if agency is not None:
        name += f"-internal-{agency.id}"
    body = (
        _csv(RESULT_COLUMNS, lang, rows)
        if format == "csv"
        else _xlsx(RESULT_COLUMNS, lang, name, rows)
    )
    return _download(body, format, name)


@router.get(
    "/v1/assessments/{assessment_id}/plan/export",
    summary="A plan to a target as CSV or XLSX",
    response_class=StreamingResponse,
    responses={200: EXPORT_CONTENT},
)
async def export_plan(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: MaybePrincipal,
    target: TargetQuery,
    increment: IncrementQuery = None,
    format: Format = "csv",
    lang: Language = "en",
) -> StreamingResponse:
    """`GET /v1/assessments/{id}/plan` as a table: one row per indicator raised, option 1 the
    plan and 2… the alternatives of the same cost (a row with no indicator when the target is
    met already)."""
    assessment, plan = await service.plan(
        session, assessment_id, principal, target=target, increment=increment
    )
    rows: list[dict[str, Any]] = []
    options: list[Plan | PlanOption] = [plan, *plan.alternatives]
    for number, option in enumerate(options, start=1):
        totals = {
            "option": number,
            "reachable": plan.reachable,
            "total_cost": option.cost,
            "index": option.index,
            "predicate": option.predicate,
        }
        empty = dict.fromkeys(("node", "name", "from", "to", "steps", "cost", "contribution"))
        steps = [step.model_dump(by_alias=True) for step in option.steps] or [empty]
        rows.extend(step | totals for step in steps)
    name = f"plan-{assessment.framework_id}-{assessment.region_code}-{assessment.period}"
    body = (
        _csv(PLAN_COLUMNS, lang, rows) if format == "csv" else _xlsx(PLAN_COLUMNS, lang, name, rows)
    )
    return _download(body, format, name)


@router.get(
    "/v1/regions/{code}/agencies/comparison/export",
    summary="The region's agencies side by side, as CSV or XLSX",
    response_class=StreamingResponse,
    responses={200: EXPORT_CONTENT},
)
async def export_agency_comparison(
    code: Annotated[str, Path(pattern=REGION_CODE, examples=["32.75"])],
    session: DbSession,
    principal: CurrentPrincipal,
    framework: FrameworkQuery,
    period: PeriodQuery,
    format: Format = "csv",
    lang: Language = "en",
) -> StreamingResponse:
    """`GET /v1/regions/{code}/agencies/comparison` as a table: one row per node, one column
    per agency (its short name) with the node's value in its internal assessment. Inside the
    region only."""
    comparison = await agency_service.comparison(session, principal, code, framework, period)
    columns = list(COMPARISON_COLUMNS) + [
        (f"{AGENCY_VALUE}{column.agency.id}",)
        + (column.agency.short_name or column.agency.name,) * 2
        for column in comparison.agencies
    ]
    rows = [
        {"id": node.id, "name": node.name, "parent": node.parent}
        | {f"{AGENCY_VALUE}{agency}": value for agency, value in node.values.items()}
        for node in comparison.nodes
    ]
    name = f"agencies-{framework}-{code}-{period}"
    body = _csv(columns, lang, rows) if format == "csv" else _xlsx(columns, lang, name, rows)
    return _download(body, format, name)


@router.get(
    "/v1/assessments/{assessment_id}/agencies/export",
    summary="A plan to a target shared out by agency (PJ), as CSV or XLSX",
    response_class=StreamingResponse,
    responses={200: EXPORT_CONTENT},
)
async def export_agency_plan(
    assessment_id: uuid.UUID,
    session: DbSession,
    principal: CurrentPrincipal,
    target: TargetQuery,
    increment: IncrementQuery = None,
    format: Format = "csv",
    lang: Language = "en",
) -> StreamingResponse:
    """`GET /v1/assessments/{id}/agencies?target=…` as a table: one row per indicator the
    plan raises, with the agency responsible for it (empty: none yet). Inside the region only."""
    plan = await agency_service.agency_plan(
        session, principal, assessment_id, target=target, increment=increment
    )
    rows = [
        {
            "agency": None
            if share.agency is None
            else share.agency.short_name or share.agency.name,
            "value": indicator.value,
        }
        | indicator.gap.model_dump(
            by_alias=True, include={"node", "name", "from_", "to", "steps", "cost", "contribution"}
        )
        for share in plan.agencies
        for indicator in share.indicators
        if indicator.gap is not None
    ]
    name = f"agency-plan-{plan.framework}-{assessment_id}"
    body = (
        _csv(AGENCY_PLAN_COLUMNS, lang, rows)
        if format == "csv"
        else _xlsx(AGENCY_PLAN_COLUMNS, lang, name, rows)
    )
    return _download(body, format, name)
