"""The assessment workflow: who may do what, in which state.

draft → submitted → in_review ⇄ evidence_requested, in_review → verified → published.
A wrong state is 409, a wrong role (or region, or assignment) 403. Published inputs are locked;
a correction reopens the assessment with a reason, audited like every other write.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit import audit, webhooks
from services.kit.auth import Principal
from services.kit.errors import Conflict, Forbidden, NotFound, invalid
from services.kit.outbox import mark_dirty
from services.kit.queue import Queue
from services.models import (
    ApiKey,
    Assessment,
    AssessmentAssignment,
    AssessmentInput,
    EvidenceRequest,
    Region,
)
from services.scoring.engine import InputError, Inputs, evaluate
from services.scoring.frameworks import initial_state, registry

ADMIN = "ministry-admin"
# (from, to) → roles that may move an assessment along that edge.
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    ("draft", "submitted"): frozenset({"region-operator", ADMIN}),
    ("submitted", "in_review"): frozenset({"assessor", ADMIN}),
    ("in_review", "evidence_requested"): frozenset({"assessor", ADMIN}),
    ("evidence_requested", "in_review"): frozenset({"region-operator", "assessor", ADMIN}),
    ("in_review", "verified"): frozenset({"assessor", ADMIN}),
    ("verified", "in_review"): frozenset({"assessor", ADMIN}),
    ("verified", "published"): frozenset({ADMIN}),
    ("published", "in_review"): frozenset({ADMIN}),  # a correction, with a reason
}
# Who writes which value of an input, and in which states.
SELF_STATES = frozenset({"draft", "evidence_requested"})
VERIFY_STATES = frozenset({"in_review"})


def snapshot(assessment: Assessment) -> dict[str, Any]:
    return {"state": assessment.state, "input_revision": assessment.input_revision}


async def is_assigned(
    session: AsyncSession, principal: Principal, assessment_id: uuid.UUID
) -> bool:
    if principal.key_id is None:
        return False
    found = await session.get(AssessmentAssignment, (assessment_id, principal.key_id))
    return found is not None


async def check_scope(session: AsyncSession, principal: Principal, assessment: Assessment) -> None:
    """The caller's role fits; now its region or assignment must cover this assessment."""
    if principal.role == ADMIN:
        return
    if principal.role == "assessor":
        if not await is_assigned(session, principal, assessment.id):
            raise Forbidden("This assessor key is not assigned to the assessment.")
    elif not principal.may_write_region(assessment.region_code):
        raise Forbidden(
            f"The key {principal.name!r} may not act for region {assessment.region_code!r}."
        )


async def locked(session: AsyncSession, assessment_id: uuid.UUID) -> Assessment:
    assessment = await session.get(Assessment, assessment_id, with_for_update=True)
    if assessment is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return assessment


async def create(
    session: AsyncSession,
    principal: Principal,
    *,
    region: str,
    framework_id: str,
    period: int,
    stage: str,
    request_id: str | None,
) -> Assessment:
    if principal.role not in ("region-operator", ADMIN):
        raise Forbidden(f"The role {principal.role!r} may not open assessments.")
    framework = registry().get(framework_id)
    if framework is None:
        raise NotFound(f"No framework {framework_id!r}.")
    if await session.get(Region, region) is None:
        raise NotFound(f"No region with Kemendagri code {region!r}.")
    if not principal.may_write_region(region):
        raise Forbidden(f"The key {principal.name!r} may not act for region {region!r}.")
    same = select(Assessment.id).where(
        Assessment.region_code == region,
        Assessment.framework_id == framework_id,
        Assessment.period == period,
        Assessment.stage == stage,
    )
    existing = await session.scalar(same)
    if existing is None:
        assessment = Assessment(
            region_code=region,
            framework_id=framework_id,
            period=period,
            stage=stage,
            state=initial_state(framework),
        )
        try:
            # A concurrent request may create the same assessment between the check and here:
            # the unique constraint decides, inside a savepoint so the loser can still answer.
            async with session.begin_nested():
                session.add(assessment)
                await session.flush()
        except IntegrityError:
            existing = await session.scalar(same)
            if existing is None:
                raise
    if existing is not None:
        raise Conflict(
            f"Assessment {existing} already covers {region} {framework_id} {period}.",
            assessment_id=str(existing),
        )
    audit.record(
        session,
        principal,
        action="assessment.create",
        entity="assessment",
        entity_id=str(assessment.id),
        after={
            "region": region,
            "framework": framework_id,
            "period": period,
            "stage": stage,
            "state": assessment.state,
        },
        request_id=request_id,
    )
    return assessment


async def set_inputs(
    session: AsyncSession,
    principal: Principal,
    assessment_id: uuid.UUID,
    values: dict[str, Any],
    note: str | None,
    queue: Queue | None,
    request_id: str | None,
) -> tuple[Assessment, str]:
    """Region operators write self-assessed values, assessors verified ones. Returns the
    assessment and which value was written ("self" or "verified")."""
    if principal.role not in ("region-operator", "assessor", ADMIN):
        raise Forbidden(f"The role {principal.role!r} may not enter assessment values.")
    assessment = await locked(session, assessment_id)
    await check_scope(session, principal, assessment)
    column = "self" if principal.role == "region-operator" else "verified"
    allowed = SELF_STATES if column == "self" else VERIFY_STATES
    if assessment.state == "published":
        raise Conflict(
            "The assessment is published and its inputs are locked; a correction "
            "reopens it first (transition to in_review with a reason)."
        )
    if assessment.state not in allowed:
        raise Conflict(
            f"{column} values are entered in {', '.join(sorted(allowed))}; the "
            f"assessment is {assessment.state}.",
            state=assessment.state,
        )
    framework = registry()[assessment.framework_id]
    nodes = {node.id: node for node in framework.nodes()}
    for node_id in values:
        node = nodes.get(node_id)
        if node is None:
            raise invalid(
                "body",
                f"/values/{node_id}",
                "unknown node",
                f"unknown node {node_id!r} in {framework.id}",
            )
        if node.is_leaf and node.input != "assessed":
            raise invalid(
                "body",
                f"/values/{node_id}",
                "computed",
                f"{node_id} is {node.input}-driven; it cannot be entered",
            )
    entered = {node_id: _text(value) for node_id, value in values.items() if value is not None}
    try:
        evaluate(framework, Inputs(values=entered))  # checks every value against its scale
    except InputError as exc:
        raise invalid("body", f"/values/{exc.node}", "off scale", str(exc)) from None
    # The assessment row is locked above, and every input write takes that lock first.
    existing = {
        row.node_id: row
        for row in await session.scalars(
            select(AssessmentInput).where(
                AssessmentInput.assessment_id == assessment.id,
                AssessmentInput.node_id.in_(list(values)),
            )
        )
    }
    for node_id, value in values.items():
        row = existing.get(node_id)
        before = None if row is None else {"self": row.self_value, "verified": row.verified_value}
        if row is None:
            row = AssessmentInput(assessment_id=assessment.id, node_id=node_id)
            session.add(row)
        stored = None if value is None else _text(value)
        if column == "self":
            row.self_value = stored
        else:
            row.verified_value = stored
        row.note = note if note is not None else row.note
        audit.record(
            session,
            principal,
            action=f"input.{column}",
            entity="assessment_input",
            entity_id=f"{assessment.id}/{node_id}",
            before=before,
            after={"self": row.self_value, "verified": row.verified_value},
            request_id=request_id,
        )
    await session.flush()
    await mark_dirty(session, [assessment.id], queue)
    await session.refresh(assessment)
    return assessment, column


def _text(value: Any) -> Any:
    """Values are kept as decimal text (lists for programme scores): never binary floats."""
    if isinstance(value, list):
        return [_text(item) for item in value]
    return str(value)


async def transition(
    session: AsyncSession,
    principal: Principal,
    assessment_id: uuid.UUID,
    to: str,
    reason: str | None,
    queue: Queue | None,
    request_id: str | None,
) -> Assessment:
    assessment = await locked(session, assessment_id)
    edge = (assessment.state, to)
    if edge not in TRANSITIONS:
        raise Conflict(
            f"An assessment in {assessment.state} cannot move to {to}.", state=assessment.state
        )
    if principal.role not in TRANSITIONS[edge]:
        raise Forbidden(
            f"The role {principal.role!r} may not move an assessment from "
            f"{assessment.state} to {to}."
        )
    await check_scope(session, principal, assessment)
    if edge == ("published", "in_review") and not (reason and reason.strip()):
        message = "Reopening a published assessment is a correction: give a reason."
        raise invalid("body", "/reason", "required", message)
    before = snapshot(assessment)
    assessment.state = to
    await session.flush()
    audit.record(
        session,
        principal,
        action="assessment.transition",
        entity="assessment",
        entity_id=str(assessment.id),
        before=before,
        after=snapshot(assessment) | ({"reason": reason} if reason else {}),
        request_id=request_id,
    )
    if to == "published" or before["state"] == "published":
        # Linked views read only published figures: they follow publication and corrections.
        await mark_dirty(session, [assessment.id], queue)
    if to == "published":
        await webhooks.emit(
            session,
            "assessment.published",
            {
                "assessment_id": str(assessment.id),
                "region": assessment.region_code,
                "framework": assessment.framework_id,
                "period": assessment.period,
            },
            queue,
        )
    return assessment


async def assign(
    session: AsyncSession,
    principal: Principal,
    assessment_id: uuid.UUID,
    key_id: uuid.UUID,
    request_id: str | None,
) -> None:
    if principal.role != ADMIN:
        raise Forbidden("Only a ministry-admin assigns assessors.")
    assessment = await locked(session, assessment_id)
    key = await session.get(ApiKey, key_id)
    if key is None or key.role != "assessor" or key.revoked_at is not None:
        raise invalid("body", "/key_id", "not an assessor", f"{key_id} is not an assessor key")
    if await session.get(AssessmentAssignment, (assessment.id, key_id)) is None:
        session.add(AssessmentAssignment(assessment_id=assessment.id, key_id=key_id))
        audit.record(
            session,
            principal,
            action="assessment.assign",
            entity="assessment",
            entity_id=str(assessment.id),
            after={"assessor": str(key_id), "name": key.name},
            request_id=request_id,
        )
        await session.flush()


async def request_evidence(
    session: AsyncSession,
    principal: Principal,
    assessment_id: uuid.UUID,
    node_ids: list[str],
    message: str,
    due_date: date | None,
    queue: Queue | None,
    request_id: str | None,
) -> EvidenceRequest:
    if principal.role not in ("assessor", ADMIN):
        raise Forbidden(f"The role {principal.role!r} may not request evidence.")
    assessment = await locked(session, assessment_id)
    await check_scope(session, principal, assessment)
    if assessment.state not in ("in_review", "evidence_requested"):
        raise Conflict(
            f"Evidence is requested during review; the assessment is {assessment.state}.",
            state=assessment.state,
        )
    known = {node.id for node in registry()[assessment.framework_id].nodes()}
    for node_id in node_ids:
        if node_id not in known:
            raise invalid(
                "body",
                "/node_ids",
                "unknown node",
                f"unknown node {node_id!r} in {assessment.framework_id}",
            )
    evidence_request = EvidenceRequest(
        assessment_id=assessment.id,
        node_ids=list(dict.fromkeys(node_ids)),  # each node once, in the order asked
        message=message,
        due_date=due_date,
        requested_by=principal.key_id,
    )
    session.add(evidence_request)
    before = snapshot(assessment)
    assessment.state = "evidence_requested"
    await session.flush()
    audit.record(
        session,
        principal,
        action="evidence.request",
        entity="assessment",
        entity_id=str(assessment.id),
        before=before,
        after=snapshot(assessment) | {"request": str(evidence_request.id), "node_ids": node_ids},
        request_id=request_id,
    )
    await webhooks.emit(
        session,
        "evidence.requested",
        {
            "assessment_id": str(assessment.id),
            "region": assessment.region_code,
            "request_id": str(evidence_request.id),
            "node_ids": node_ids,
            "message": message,
            "due_date": due_date.isoformat() if due_date else None,
        },
        queue,
    )
    return evidence_request
