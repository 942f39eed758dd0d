"""Result reads as the API answers them: one builder per resource, fed by the repository.

The routers (JSON and exports) only parse the request, pick the cache key and render; what an
answer holds is built here, once, as the models of :mod:`services.api.result.schemas`.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.framework.service import get_or_404
from services.api.result import repository
from services.api.result.repository import AssessmentRow
from services.api.result.schemas import (
    AgencyRef,
    AssessmentOut,
    AssessmentPage,
    AssessmentResults,
    AssessorOutputOut,
    ComparedNode,
    Comparison,
    Coverage,
    Dashboard,
    IndexFigure,
    Indices,
    NodeValue,
    PartStats,
    Plan,
    Ranking,
    RankingItem,
    Ranks,
    RegionRef,
    ResultNodeOut,
    ResultSummary,
    Stats,
    Summary,
    SummaryPart,
    Trend,
    TrendPoint,
)
from services.domain.access import policy
from services.domain.access.principal import Principal
from services.domain.assessment import repository as assessments
from services.domain.assessment.values import counted_values
from services.domain.region import repository as regions
from services.kit.errors import NotFound, Unprocessable, invalid
from services.kit.pagination import decode_cursor, encode_cursor
from services.models import (
    Agency,
    Assessment,
    AssessmentState,
    AssessorOutput,
    RegionKind,
    ResultNode,
    ResultState,
)
from services.scoring.engine import (
    Framework,
    InputError,
    Inputs,
    PlanError,
    round_exact,
)
from services.scoring.engine import plan as planner
from services.scoring.engine.numbers import decimal_text
from services.scoring.frameworks import families

STATES = frozenset(AssessmentState)


def rounded(framework: Framework, value: Fraction | Decimal) -> str:
    """A derived figure (mean, median, percent) rounded as ``framework`` rounds its values."""
    return format(round_exact(Fraction(value), framework.precision, framework.rounding), "f")


async def check_region(session: AsyncSession, code: str | None, *, province: bool = False) -> None:
    """404 unless ``code`` (if given) is a region, or with ``province`` a province."""
    if code is None:
        return
    region = await regions.get(session, code)
    if region is None or (province and region.kind != RegionKind.PROVINSI):
        kind = "province" if province else "region"
        raise NotFound(f"No {kind} with Kemendagri code {code!r}.")


# Assessments.


def indices(state: ResultState | None) -> Indices:
    """The self-assessed and the verified index of a stored result (nulls before the first
    computation): shown wherever the index is, to whoever sees it."""
    return Indices(
        self_assessed=IndexFigure(
            value=decimal_text(state.self_index_value) if state else None,
            predicate=state.self_predicate if state else None,
        ),
        verified=IndexFigure(
            value=decimal_text(state.verified_index_value) if state else None,
            predicate=state.verified_predicate if state else None,
        ),
    )


def agency_ref(agency: Agency | None) -> AgencyRef | None:
    if agency is None:
        return None
    return AgencyRef(id=agency.id, name=agency.name, short_name=agency.short_name, kind=agency.kind)


def _assessment_fields(row: AssessmentRow) -> dict[str, Any]:
    assessment, state, name, province_code, agency = row
    return {
        "id": assessment.id,
        "region": RegionRef(code=assessment.region_code, name=name, province_code=province_code),
        "framework": assessment.framework_id,
        "period": assessment.period,
        "stage": assessment.stage,
        "state": assessment.state,
        "input_revision": assessment.input_revision,
        "result": None
        if state is None
        else ResultSummary(
            index=decimal_text(state.index_value),
            predicate=state.predicate,
            indices=indices(state),
            complete=state.complete,
            input_revision=state.input_revision,
            computed_at=state.computed_at.isoformat(),
            error=state.error,
        ),
        "internal": assessment.internal,
        "agency": agency_ref(agency),
    }


def assessment_out(row: AssessmentRow) -> AssessmentOut:
    """The one JSON shape of an assessment, from a row of :func:`repository.assessment` (or of
    :func:`repository.assessments_page`): the assessment, its result state, region name and
    province."""
    return AssessmentOut(**_assessment_fields(row))


async def current_assessment(session: AsyncSession, assessment_id: uuid.UUID) -> AssessmentOut:
    """The assessment as it stands in this transaction, for a caller that may act on it (the
    answer of a workflow write)."""
    row = await repository.assessment(session, assessment_id, None)
    if row is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return assessment_out(row)


async def assessment_or_404(
    session: AsyncSession, assessment_id: uuid.UUID, principal: Principal | None
) -> AssessmentRow:
    """The assessment's row if the caller may see it; otherwise 404, as if it did not exist."""
    row = await repository.assessment(session, assessment_id, policy.visibility(principal))
    if row is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return row


async def assessment_page(
    session: AsyncSession,
    principal: Principal | None,
    *,
    framework: str | None,
    period: int | None,
    region: str | None,
    province: str | None,
    state: str | None,
    cursor: str | None,
    limit: int,
    internal: bool | None = None,
    agency: uuid.UUID | None = None,
) -> AssessmentPage:
    if framework is not None:
        get_or_404(framework)

    async def check_places() -> None:
        await check_region(session, region)
        await check_region(session, province, province=True)

    # A page with rows shows that its region and province exist (an assessment's region is a
    # region; only a province is any region's province): they are looked up only for an empty
    # page, or first when a later check may fail, so that its errors come in the same order.
    # One query fewer for the most common read, a super-app confirming its own result.
    checked = (state is not None and state not in STATES) or cursor is not None
    if checked:
        await check_places()
    if state is not None and state not in STATES:
        raise invalid("query", "/state", "unknown", f"query /state: unknown state {state!r}")
    after = decode_cursor(cursor, uuid.UUID)[0] if cursor else None
    rows = await repository.assessments_page(
        session,
        framework=framework,
        period=period,
        region=region,
        province=province,
        state=state,
        after=after,
        limit=limit + 1,
        visibility=policy.visibility(principal),
        internal=internal,
        agency=agency,
    )
    if not rows and not checked:
        await check_places()
    items = [assessment_out(row) for row in rows[:limit]]
    next_cursor = encode_cursor(str(items[-1].id)) if len(rows) > limit else None
    return AssessmentPage(items=items, next_cursor=next_cursor)


# The explained result tree.


def node_rows(
    framework: Framework,
    stored: Mapping[str, ResultNode],
    evidence: Mapping[str, int] | None = None,
    assessor: Mapping[str, AssessorOutputOut] | None = None,
) -> list[ResultNodeOut]:
    """Every node of ``framework`` in framework order with its stored result (``source``
    'missing' where there is none), evidence count and the assessor's output the caller may
    read: the tree's nodes and the export's rows."""
    evidence = evidence or {}
    assessor = assessor or {}
    rows = []
    for node in framework.nodes():
        result = stored.get(node.id)
        if result is None:
            rows.append(
                ResultNodeOut(
                    id=node.id,
                    name=node.name,
                    parent=None,
                    value=None,
                    predicate=None,
                    weight=None,
                    contribution=None,
                    source="missing",
                    inputs=[],
                    missing=[],
                    note=None,
                    metrics={},
                    value_from=None,
                    evidence_count=evidence.get(node.id, 0),
                    input_revision=None,
                    computed_at=None,
                    assessor=assessor.get(node.id),
                )
            )
            continue
        detail = result.detail
        rows.append(
            ResultNodeOut(
                id=node.id,
                name=node.name,
                parent=result.parent_id,
                value=decimal_text(result.value),
                predicate=result.predicate,
                weight=decimal_text(result.weight),
                contribution=decimal_text(result.contribution),
                source=result.source,
                inputs=detail.get("inputs", []),
                missing=detail.get("missing", []),
                note=detail.get("note"),
                metrics=detail.get("metrics", {}),
                value_from=detail.get("value_from"),
                evidence_count=evidence.get(node.id, 0),
                input_revision=result.input_revision,
                computed_at=result.computed_at.isoformat(),
                assessor=assessor.get(node.id),
            )
        )
    return rows


async def stored_nodes(session: AsyncSession, assessment_id: uuid.UUID) -> dict[str, ResultNode]:
    return {node.node_id: node for node in await repository.result_nodes(session, assessment_id)}


def assessor_output_out(row: AssessorOutput) -> AssessorOutputOut:
    return AssessorOutputOut(
        evidence_uploaded=row.evidence_uploaded,
        interview_confirmed=row.interview_confirmed,
        approved=row.approved,
        catatan=row.catatan,
        rekomendasi=row.rekomendasi,
        shared_with_region=row.shared_with_region,
        updated_at=row.updated_at.isoformat(),
    )


async def readable_assessor_output(
    session: AsyncSession, assessment: Assessment, principal: Principal | None
) -> dict[str, AssessorOutputOut]:
    """Node id → the assessor's output on it, for the nodes the caller may read it on (the
    caller may see ``assessment``; the policy decides node by node)."""
    return {
        row.node_id: assessor_output_out(row)
        for row in await repository.assessor_outputs(session, assessment.id)
        if policy.sees_assessor_output(
            principal, assessment, shared_with_region=row.shared_with_region
        )
    }


async def results(
    session: AsyncSession, assessment_id: uuid.UUID, principal: Principal | None
) -> AssessmentResults:
    row = await assessment_or_404(session, assessment_id, principal)
    assessment, state = row[0], row[1]
    framework = get_or_404(assessment.framework_id)
    stored = await stored_nodes(session, assessment_id)
    evidence = await repository.evidence_counts(session, assessment_id)
    assessor = await readable_assessor_output(session, assessment, principal)
    return AssessmentResults(
        **_assessment_fields(row),
        framework_version=framework.version,
        framework_hash=state.framework_hash if state else None,
        stale=state is None or state.input_revision < assessment.input_revision,
        nodes=node_rows(framework, stored, evidence, assessor),
    )


async def export_rows(
    session: AsyncSession, assessment_id: uuid.UUID, principal: Principal | None
) -> tuple[Assessment, Agency | None, list[ResultNodeOut]]:
    """The assessment, the agency of an internal one, and its tree's rows with the assessor's
    output the caller may read, for an export (evidence counts are not exported)."""
    row = await assessment_or_404(session, assessment_id, principal)
    assessment, agency = row[0], row[4]
    framework = get_or_404(assessment.framework_id)
    stored = await stored_nodes(session, assessment_id)
    assessor = await readable_assessor_output(session, assessment, principal)
    return assessment, agency, node_rows(framework, stored, assessor=assessor)


# Summary, rankings, trends, comparisons, dashboards.


async def _ranks(
    session: AsyncSession,
    framework: str,
    period: int,
    region: str,
    province: str | None,
    published_only: bool,
    *,
    ranked: bool = True,
) -> Ranks:
    """The region's place in the official rankings; ``ranked`` False (an internal
    assessment): no place, beside how many are ranked."""
    national = await repository.ranking(session, framework, period, None, published_only)
    provincial = await repository.ranking(session, framework, period, province, published_only)
    mine = {r.region_code: r for r in national}.get(region) if ranked else None
    mine_province = {r.region_code: r for r in provincial}.get(region) if ranked else None
    return Ranks(
        national=mine.rank if mine else None,
        of_national=len(national),
        province=mine_province.rank if mine_province else None,
        of_province=len(provincial),
    )


async def summary(
    session: AsyncSession, assessment_id: uuid.UUID, principal: Principal | None
) -> Summary:
    row = await assessment_or_404(session, assessment_id, principal)
    assessment, state, _, province_code, agency = row
    framework = get_or_404(assessment.framework_id)
    stored = await stored_nodes(session, assessment_id)
    parts = [
        SummaryPart(
            id=child.id,
            name=child.name,
            weight=decimal_text(stored[child.id].weight),
            value=decimal_text(stored[child.id].value),
        )
        for child in framework.index.children
        if child.id in stored
    ]
    published_only = not policy.sees_unpublished_figures(principal)
    trend = await repository.trend(  # the same version: a change of instrument is no change
        session,
        [assessment.framework_id],
        assessment.region_code,
        # An internal assessment's history is its agency's, seen by the region's own keys.
        published_only and not assessment.internal,
        agency=assessment.agency_id,
    )
    history = {point.period: point.index_value for point in trend}
    previous = history.get(assessment.period - 1)
    index = state.index_value if state else None
    return Summary(
        assessment_id=assessment.id,
        region=assessment.region_code,
        framework=assessment.framework_id,
        period=assessment.period,
        index=decimal_text(index),
        predicate=state.predicate if state else None,
        indices=indices(state),
        parts=parts,
        rank=await _ranks(
            session,
            assessment.framework_id,
            assessment.period,
            assessment.region_code,
            province_code,
            published_only,
            ranked=not assessment.internal,
        ),
        previous_index=decimal_text(previous),
        improvement=None if index is None or previous is None else decimal_text(index - previous),
        internal=assessment.internal,
        agency=agency_ref(agency),
    )


async def ranking(
    session: AsyncSession,
    framework: str,
    period: int,
    province: str | None,
    published_only: bool,
) -> Ranking:
    get_or_404(framework)
    await check_region(session, province, province=True)
    items = [
        RankingItem(
            rank=r.rank,
            region=r.region_code,
            name=r.name,
            province_code=r.province_code,
            index=format(r.index_value, "f"),
            predicate=r.predicate,
            previous_rank=r.previous_rank,
            movement=None if r.previous_rank is None else r.previous_rank - r.rank,
            previous_index=decimal_text(r.previous_index),
            improvement=None
            if r.previous_index is None
            else decimal_text(r.index_value - r.previous_index),
        )
        for r in await repository.ranking(session, framework, period, province, published_only)
    ]
    return Ranking(framework=framework, period=period, province=province, items=items)


async def trend(
    session: AsyncSession,
    framework: str | None,
    family: str | None,
    region: str,
    published_only: bool,
) -> Trend:
    """A region's index per period on one version, or on every version of an instrument. The
    change from one period to the next is given only between periods on the same version: across
    a change of instrument (SPBE 2020 → IPD 2026) the figures are not comparable."""
    if framework is not None:
        version = get_or_404(framework)
        if family is not None and version.family != family:
            raise invalid(
                "query",
                "/family",
                "family",
                f"query /family: {framework} is a version of {version.family}, not of {family}",
            )
        family, ids = version.family, [version.id]
    else:
        if family is None:
            raise invalid("query", "/family", "missing", "query /family: give family or framework")
        versions = families().get(family)
        if versions is None:
            raise NotFound(f"No instrument family {family!r} (known: {', '.join(families())}).")
        ids = [version.id for version in versions]
    await check_region(session, region)
    items: list[TrendPoint] = []
    previous: tuple[str, Decimal | None] | None = None
    for row in await repository.trend(session, ids, region, published_only):
        changed = previous is not None and previous[0] != row.framework_id
        improvement = None
        if previous is not None and not changed and None not in (row.index_value, previous[1]):
            improvement = decimal_text(row.index_value - previous[1])
        items.append(
            TrendPoint(
                period=row.period,
                framework=row.framework_id,
                index=decimal_text(row.index_value),
                predicate=row.predicate,
                improvement=improvement,
                instrument_changed=changed,
            )
        )
        previous = (row.framework_id, row.index_value)
    instruments = list(dict.fromkeys(item.framework for item in items))
    return Trend(
        family=family,
        framework=framework,
        region=region,
        instruments=instruments,
        items=items,
    )


async def compare(
    session: AsyncSession,
    framework_id: str,
    period: int,
    codes: Sequence[str],
    published_only: bool,
) -> Comparison:
    """Each node of the framework with its value in each of ``codes`` (1 to 50 regions)."""
    framework = get_or_404(framework_id)
    if not 1 <= len(codes) <= 50:
        raise invalid("query", "/regions", "count", "query /regions: give 1 to 50 region codes")
    known = await regions.existing(session, codes)
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise NotFound(f"No region with Kemendagri code {unknown[0]!r}.")
    values: dict[str, dict[str, NodeValue]] = {}
    for row in await repository.node_values(session, framework_id, period, codes, published_only):
        values.setdefault(row.node_id, {})[row.region_code] = NodeValue(
            value=decimal_text(row.value), predicate=row.predicate
        )
    nodes = [
        ComparedNode(
            id=node.id,
            name=node.name,
            values={code: values.get(node.id, {}).get(code) for code in codes},
        )
        for node in framework.nodes()
    ]
    return Comparison(framework=framework_id, period=period, regions=list(codes), nodes=nodes)


def _stats(framework: Framework, values: list[Decimal]) -> dict[str, str | None]:
    if not values:
        return {"mean": None, "median": None, "min": None, "max": None}
    exact = [Fraction(value) for value in values]
    return {
        "mean": rounded(framework, sum(exact, Fraction(0)) / len(exact)),
        "median": rounded(framework, statistics.median(exact)),
        "min": decimal_text(min(values)),
        "max": decimal_text(max(values)),
    }


async def dashboard(
    session: AsyncSession,
    framework_id: str,
    period: int,
    province: str | None,
    published_only: bool,
) -> Dashboard:
    await check_region(session, province, province=True)
    framework = get_or_404(framework_id)
    ranked = await repository.ranking(session, framework_id, period, province, published_only)
    indices = [row.index_value for row in ranked]
    predicates: dict[str, int] = {}
    for row in ranked:
        if row.predicate:
            predicates[row.predicate] = predicates.get(row.predicate, 0) + 1
    parts: dict[str, list[Decimal]] = {child.id: [] for child in framework.index.children}
    children = await repository.child_values(
        session, framework_id, period, framework.index.id, province, published_only
    )
    for child_value in children:
        if child_value.value is not None:
            parts.setdefault(child_value.node_id, []).append(child_value.value)
    in_scope = await repository.kab_kota_count(session, province)
    return Dashboard(
        framework=framework_id,
        period=period,
        province=province,
        coverage=Coverage(
            with_results=len(indices),
            regions=in_scope,
            percent=rounded(framework, Fraction(100 * len(indices), in_scope or 1)),
        ),
        predicates=predicates,
        index=Stats(**_stats(framework, indices)),
        parts={
            child.id: PartStats(name=child.name, **_stats(framework, parts.get(child.id, [])))
            for child in framework.index.children
        },
    )


# Plans: the cheapest steps to a target.

# The most work one request may ask of the planner (leaves × budgets of its cost table): an SPBE
# plan takes a few thousand cells, an IPD plan in steps of 0.01 a few hundred thousand.
PLAN_CELLS = 2_000_000


async def plan(
    session: AsyncSession,
    assessment_id: uuid.UUID,
    principal: Principal | None,
    *,
    target: str,
    costs: Mapping[str, Decimal] | None = None,
    increment: Decimal | None = None,
    where: str = "query",
) -> tuple[Assessment, Plan]:
    """The cheapest steps on the assessment's assessed leaves to ``target``, from the values
    that count (each leaf's verified value, else the region's own), for a caller who may see
    the assessment; ``where`` the part of the request the parameters came in (for a 422)."""
    assessment = (await assessment_or_404(session, assessment_id, principal))[0]
    framework = get_or_404(assessment.framework_id)
    least = Decimal(1).scaleb(-framework.precision)
    if increment is not None and increment < least:
        raise invalid(
            where,
            "/increment",
            "too fine",
            f"{where} /increment: {increment} is finer than the precision of {framework.id} "
            f"({least})",
        )
    entered = await assessments.entered_values(session, [assessment.id])
    values, _ = counted_values(framework, entered[assessment.id])
    try:
        # Pure CPU, bounded by PLAN_CELLS: off the event loop.
        result = await asyncio.to_thread(
            planner,
            framework,
            Inputs(values=values),
            target,
            costs=costs,
            increment=increment,
            max_cells=PLAN_CELLS,
        )
    except InputError as exc:
        raise _plan_problem(exc, where) from None
    except PlanError as exc:
        raise Unprocessable(f"No plan for {framework.id}: {exc}", code="no-plan") from None
    return assessment, Plan.model_validate({"assessment": assessment.id, **result.to_dict()})


def _plan_problem(exc: InputError, where: str) -> Unprocessable:
    """A 422 pointing at the parameter the planner refused (target, costs, increment)."""
    message = str(exc)
    if message.startswith("costs"):
        pointer = f"/costs/{exc.node}" if exc.node else "/costs"
    elif message.startswith("increment"):
        pointer = "/increment"
    elif message.startswith("target"):
        pointer = "/target"
    else:  # a stored value the framework refuses
        return Unprocessable(message)
    return invalid(where, pointer, "invalid", f"{where} {pointer}: {message}")
