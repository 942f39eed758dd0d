"""Agencies (perangkat daerah, OPD) of a region: managed by its operators, seen by its own
keys only (services.domain.access.policy). Which agency answers for which indicator of an
assessment (PJ); the assessment seen per agency with the planner's gap shared out by PJ; and
the agencies side by side on their internal assessments.

Every write is audited; the caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.agency import repository
from services.api.agency.schemas import (
    AgencyColumn,
    AgencyComparison,
    AgencyOut,
    AgencyPage,
    AgencyPlan,
    AgencyShare,
    ComparedIndicator,
    OwnedIndicator,
    ResponsibilitiesOut,
    WeakIndicator,
)
from services.api.framework.service import get_or_404
from services.api.result import service as results
from services.domain.access import policy
from services.domain.access.policy import Action
from services.domain.access.principal import Context, Principal
from services.domain.agency import repository as agencies
from services.domain.assessment import repository as assessments
from services.domain.audit import service as audit
from services.domain.region import repository as regions
from services.kit.errors import Conflict, NotFound, invalid
from services.kit.pagination import decode_cursor, encode_cursor
from services.models import Agency, Assessment
from services.scoring.engine import round_exact
from services.scoring.engine.numbers import decimal_text

WEAKEST = 10


def _snapshot(agency: Agency) -> dict[str, Any]:
    return {"name": agency.name, "short_name": agency.short_name, "kind": agency.kind}


async def _region_for(session: AsyncSession, principal: Principal | None, code: str) -> None:
    """404 unless ``code`` is a region and the caller one of its own keys: outside the
    region, its agencies do not exist."""
    if await regions.get(session, code) is None:
        raise NotFound(f"No region with Kemendagri code {code!r}.")
    policy.require_inside_region(principal, code, f"No agencies of region {code!r}.")


async def _agency_of(session: AsyncSession, code: str, agency_id: uuid.UUID) -> Agency:
    agency = await agencies.lock(session, agency_id)
    if agency is None or agency.region_code != code:
        raise NotFound(f"No agency {agency_id} in region {code!r}.")
    return agency


async def page(
    session: AsyncSession, principal: Principal, code: str, cursor: str | None, limit: int
) -> AgencyPage:
    await _region_for(session, principal, code)
    after = tuple(decode_cursor(cursor, str, uuid.UUID)) if cursor else None
    rows = await agencies.page(session, code, after=after, limit=limit + 1)
    items = [AgencyOut.model_validate(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return AgencyPage(
        items=items, next_cursor=encode_cursor(last.name, str(last.id)) if last else None
    )


async def _unique_name(
    session: AsyncSession, code: str, name: str, other_than: uuid.UUID | None = None
) -> None:
    same = await agencies.named(session, code, name, other_than=other_than)
    if same is not None:
        raise Conflict(
            f"Region {code} has an agency named {name!r} already.", agency_id=str(same.id)
        )


async def create(
    session: AsyncSession, context: Context, code: str, fields: dict[str, Any]
) -> Agency:
    policy.require(context.principal, Action.MANAGE_AGENCIES)
    await _region_for(session, context.principal, code)
    await _unique_name(session, code, fields["name"])
    agency = Agency(region_code=code, **fields)
    try:
        async with session.begin_nested():  # a concurrent twin: the constraint decides
            await agencies.add(session, agency)
    except IntegrityError:
        await _unique_name(session, code, fields["name"])
        raise
    audit.record(
        session,
        context,
        action="agency.create",
        entity="agency",
        entity_id=str(agency.id),
        after={"region": code, **_snapshot(agency)},
    )
    return agency


async def update(
    session: AsyncSession,
    context: Context,
    code: str,
    agency_id: uuid.UUID,
    fields: dict[str, Any],
) -> Agency:
    """Change the fields given (a field left out keeps its value)."""
    policy.require(context.principal, Action.MANAGE_AGENCIES)
    await _region_for(session, context.principal, code)
    agency = await _agency_of(session, code, agency_id)
    for field in ("name", "kind"):
        if field in fields and fields[field] is None:
            raise invalid("body", f"/{field}", "null", f"{field} cannot be cleared")
    if "name" in fields:
        await _unique_name(session, code, fields["name"], agency.id)
    before = _snapshot(agency)
    for field, value in fields.items():
        setattr(agency, field, value)
    await session.flush()
    await session.refresh(agency)
    audit.record(
        session,
        context,
        action="agency.update",
        entity="agency",
        entity_id=str(agency.id),
        before=before,
        after=_snapshot(agency),
    )
    return agency


async def delete(session: AsyncSession, context: Context, code: str, agency_id: uuid.UUID) -> None:
    """Remove an agency: the indicators and evidence it answered for answer to none (counted
    in the audit row). One evaluated internally keeps its figures: 409."""
    policy.require(context.principal, Action.MANAGE_AGENCIES)
    await _region_for(session, context.principal, code)
    agency = await _agency_of(session, code, agency_id)
    evaluated = await agencies.internal_assessments(session, agency.id)
    if evaluated:
        raise Conflict(
            f"Agency {agency.name!r} has {evaluated} internal assessment(s): their figures stay, "
            "so the agency stays.",
            internal_assessments=evaluated,
        )
    responsible_for = await agencies.responsibility_count(session, agency.id)
    before = _snapshot(agency)
    await agencies.remove(session, agency)
    audit.record(
        session,
        context,
        action="agency.delete",
        entity="agency",
        entity_id=str(agency_id),
        before={"region": code, **before, "responsible_for": responsible_for},
    )


# Who answers for which indicator (PJ).


async def _assessment_inside(
    session: AsyncSession, principal: Principal, assessment_id: uuid.UUID, *, lock: bool = False
) -> Assessment:
    """The assessment, for one of its region's own keys; 404 for anyone else."""
    found = await (
        assessments.lock(session, assessment_id)
        if lock
        else assessments.get(session, assessment_id)
    )
    if found is None:
        raise NotFound(f"No assessment {assessment_id}.")
    await policy.require_visible(session, principal, found)
    policy.require_inside_region(principal, found.region_code, f"No assessment {assessment_id}.")
    return found


async def _responsibilities_out(
    session: AsyncSession, assessment: Assessment
) -> ResponsibilitiesOut:
    owners = await agencies.responsibilities(session, assessment.id)
    known = await agencies.by_ids(session, sorted(set(owners.values())))
    return ResponsibilitiesOut(
        assessment_id=assessment.id,
        nodes={
            node: ref
            for node, agency_id in sorted(owners.items())
            if (ref := results.agency_ref(known.get(agency_id))) is not None
        },
    )


async def responsibilities(
    session: AsyncSession, principal: Principal, assessment_id: uuid.UUID
) -> ResponsibilitiesOut:
    assessment = await _assessment_inside(session, principal, assessment_id)
    return await _responsibilities_out(session, assessment)


async def set_responsibilities(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    nodes: dict[str, uuid.UUID | None],
) -> ResponsibilitiesOut:
    """Name the agency responsible (PJ) for indicators of the assessment (null: none). Leaves
    only, agencies of the assessment's region; anything else is 422 and nothing is written.
    No figure depends on it, in any state."""
    policy.require(context.principal, Action.MANAGE_AGENCIES)
    assessment = await _assessment_inside(session, context.principal, assessment_id, lock=True)
    framework = get_or_404(assessment.framework_id)
    leaves = {node.id for node in framework.nodes() if node.is_leaf}
    known = {node.id for node in framework.nodes()}
    for node_id in nodes:
        if node_id not in leaves:
            detail = "inner node" if node_id in known else "unknown node"
            raise invalid(
                "body",
                f"/nodes/{node_id}",
                detail,
                f"{node_id}: an agency answers for an indicator (a leaf) of {framework.id}"
                if node_id in known
                else f"unknown node {node_id!r} in {framework.id}",
            )
    named = await agencies.by_ids(session, sorted({a for a in nodes.values() if a is not None}))
    for node_id, agency_id in nodes.items():
        if agency_id is not None and (
            agency_id not in named or named[agency_id].region_code != assessment.region_code
        ):
            raise invalid(
                "body",
                f"/nodes/{node_id}",
                "unknown agency",
                f"no agency {agency_id} in region {assessment.region_code}",
            )
    before = await agencies.responsibilities(session, assessment.id)
    await agencies.set_responsibilities(session, assessment.id, nodes)
    audit.record(
        session,
        context,
        action="responsibility.set",
        entity="assessment",
        entity_id=str(assessment.id),
        before={node: _text(before.get(node)) for node in sorted(nodes)},
        after={node: _text(agency) for node, agency in sorted(nodes.items())},
    )
    return await _responsibilities_out(session, assessment)


def _text(agency_id: uuid.UUID | None) -> str | None:
    return None if agency_id is None else str(agency_id)


# The assessment per agency, with the plan's gap shared out by PJ.


async def agency_plan(
    session: AsyncSession,
    principal: Principal,
    assessment_id: uuid.UUID,
    *,
    target: str | None,
    increment: Decimal | None,
) -> AgencyPlan:
    """Per agency of the region: the indicators it answers for with their current values and,
    for a ``target``, the planner's steps on them (``GET /v1/assessments/{id}/plan``, grouped
    by PJ); then the indicators no agency answers for."""
    assessment = await _assessment_inside(session, principal, assessment_id)
    framework = get_or_404(assessment.framework_id)
    plan = None
    if target is not None:
        _, plan = await results.plan(
            session, assessment_id, principal, target=target, increment=increment
        )
    steps = {step.node: step for step in plan.steps} if plan else {}
    stored = await results.stored_nodes(session, assessment.id)
    owners = await agencies.responsibilities(session, assessment.id)
    region_agencies = await agencies.of_region(session, assessment.region_code)
    requests = await assessments.evidence_requests(session, assessment.id, answered=False)
    names = {node.id: node.name for node in framework.nodes()}
    index_leaves = [node.id for node in framework.index.walk() if node.is_leaf]
    listed = list(dict.fromkeys([*index_leaves, *sorted(owners)]))

    def share(agency: Agency | None, node_ids: Sequence[str]) -> AgencyShare:
        indicators = []
        for node_id in node_ids:
            result = stored.get(node_id)
            indicators.append(
                OwnedIndicator(
                    node=node_id,
                    name=names.get(node_id, node_id),
                    value=decimal_text(result.value) if result else None,
                    value_from=result.detail.get("value_from") if result else None,
                    gap=steps.get(node_id),
                )
            )
        own = [steps[node] for node in node_ids if node in steps]
        wanted = set(node_ids)
        return AgencyShare(
            agency=results.agency_ref(agency),
            indicators=indicators,
            steps=sum(step.steps for step in own),
            cost=_sum(step.cost for step in own),
            contribution=_sum(step.contribution for step in own),
            open_evidence_requests=sum(1 for r in requests if wanted & set(r.node_ids)),
        )

    shares = [
        share(agency, [node for node in listed if owners.get(node) == agency.id])
        for agency in region_agencies
        if agency.id in owners.values()
    ]
    shares.append(share(None, [node for node in listed if node not in owners]))
    return AgencyPlan(
        assessment=assessment.id,
        framework=framework.id,
        internal=assessment.internal,
        target=target,
        target_index=plan.target_index if plan else None,
        reachable=plan.reachable if plan else None,
        current_index=plan.current.index if plan else None,
        index=plan.index if plan else None,
        predicate=plan.predicate if plan else None,
        agencies=shares,
    )


def _sum(texts: Any) -> str:
    return format(sum((Decimal(text) for text in texts), Decimal(0)), "f")


# The agencies side by side.


async def comparison(
    session: AsyncSession, principal: Principal, code: str, framework_id: str, period: int
) -> AgencyComparison:
    """Each node of the framework with its value in each agency's internal assessment for the
    period, and the indicators weakest across the agencies."""
    framework = get_or_404(framework_id)
    await _region_for(session, principal, code)
    region_agencies = await agencies.of_region(session, code)
    evaluated = {
        row[0].agency_id: row
        for row in await repository.internal_assessments(session, code, framework.id, period)
    }
    values: dict[uuid.UUID, dict[str, Decimal | None]] = {}
    by_assessment = {row[0].id: row[0].agency_id for row in evaluated.values()}
    for assessment_id, node_id, value in await repository.node_values(
        session, sorted(by_assessment)
    ):
        agency_id = by_assessment[assessment_id]
        assert agency_id is not None
        values.setdefault(agency_id, {})[node_id] = value
    columns = []
    for agency in region_agencies:
        row = evaluated.get(agency.id)
        ref = results.agency_ref(agency)
        assert ref is not None
        columns.append(
            AgencyColumn(
                agency=ref,
                assessment=row[0].id if row else None,
                state=row[0].state if row else None,
                index=decimal_text(row[1].index_value) if row and row[1] else None,
                predicate=row[1].predicate if row and row[1] else None,
            )
        )
    nodes = [
        ComparedIndicator(
            id=node.id,
            name=node.name,
            parent=parent,
            leaf=node.is_leaf,
            values={
                str(agency.id): decimal_text(values.get(agency.id, {}).get(node.id))
                for agency in region_agencies
            },
        )
        for node, parent in _with_parents(framework.nodes())
    ]
    weakest: list[tuple[Fraction, str, WeakIndicator]] = []
    for node in framework.index.walk():
        if not node.is_leaf or node.scale is None or node.scale.max == node.scale.min:
            continue
        given = {
            agency.id: value
            for agency in region_agencies
            if (value := values.get(agency.id, {}).get(node.id)) is not None
        }
        if not given:
            continue
        mean = sum((Fraction(v) for v in given.values()), Fraction(0)) / len(given)
        share_of_scale = (mean - node.scale.min) / (node.scale.max - node.scale.min)
        lowest = min(given.values())
        weakest.append(
            (
                share_of_scale,
                node.id,
                WeakIndicator(
                    id=node.id,
                    name=node.name,
                    mean=results.rounded(framework, mean),
                    share=format(round_exact(share_of_scale, 4, framework.rounding), "f"),
                    lowest=format(lowest, "f"),
                    lowest_agencies=[a for a, v in given.items() if v == lowest],
                    agencies=len(given),
                ),
            )
        )
    weakest.sort(key=lambda item: (item[0], item[1]))
    return AgencyComparison(
        region=code,
        framework=framework.id,
        period=period,
        agencies=columns,
        nodes=nodes,
        weakest=[item[2] for item in weakest[:WEAKEST]],
    )


def _with_parents(nodes: Any) -> list[tuple[Any, str | None]]:
    """Each node with its parent's id, in framework order."""
    parent_of: dict[str, str | None] = {}
    ordered = list(nodes)
    for node in ordered:
        for child in node.children:
            parent_of[child.id] = node.id
    return [(node, parent_of.get(node.id)) for node in ordered]
