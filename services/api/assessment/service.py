"""The assessment workflow: open, fill in, move through the states, assign, request evidence,
record the assessor's output per node.

Which moves exist and who makes them is the table in services/domain/assessment/states.py;
who may act on which assessment is the access policy. A wrong state is 409, a wrong role (or
region, or assignment) 403. Published inputs are locked; a correction reopens the assessment
with a reason. Every write is audited; the caller commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.assessment.schemas import ActorOut
from services.domain.access import policy
from services.domain.access import repository as keys
from services.domain.access import service as access
from services.domain.access.policy import Action
from services.domain.access.principal import Context
from services.domain.agency import repository as agencies
from services.domain.assessment import repository
from services.domain.assessment.states import (
    ASSESSOR_OUTPUT_STATES,
    TRANSITIONS,
    VALUE_STATES,
    Value,
    initial_state,
)
from services.domain.audit import service as audit
from services.domain.recompute.service import mark_dirty, mark_followers_dirty
from services.domain.region import repository as regions
from services.domain.webhook import service as webhooks
from services.kit.errors import Conflict, NotFound, invalid
from services.kit.queue import Queue
from services.kit.settings import OidcIssuer
from services.models import (
    Assessment,
    AssessmentState,
    AssessorOutput,
    EvidenceRequest,
    Person,
    Role,
)
from services.scoring.engine import Framework, InputError, Inputs, evaluate
from services.scoring.frameworks import families, in_force, registry


def snapshot(assessment: Assessment) -> dict[str, Any]:
    return {"state": assessment.state, "input_revision": assessment.input_revision}


async def _locked(session: AsyncSession, assessment_id: uuid.UUID) -> Assessment:
    assessment = await repository.lock(session, assessment_id)
    if assessment is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return assessment


async def _move(
    session: AsyncSession,
    context: Context,
    assessment: Assessment,
    to: AssessmentState,
    *,
    action: str,
    after: dict[str, Any],
) -> dict[str, Any]:
    """Set the state and audit the move; returns the state before it."""
    before = snapshot(assessment)
    assessment.state = to
    await session.flush()
    audit.record(
        session,
        context,
        action=action,
        entity="assessment",
        entity_id=str(assessment.id),
        before=before,
        after=snapshot(assessment) | after,
    )
    return before


async def create(
    session: AsyncSession,
    context: Context,
    *,
    region: str,
    family: str | None,
    framework_id: str | None,
    period: int,
    stage: str,
    agency_id: uuid.UUID | None = None,
) -> Assessment:
    """Open the region's official assessment, or with ``agency_id`` an internal assessment of
    one of its agencies (OPD) beside it: seen inside the region only, never in official
    figures."""
    principal = context.principal
    if agency_id is None:
        policy.require(principal, Action.OPEN_ASSESSMENT)
    else:
        policy.require_ever(principal, Action.OPEN_ASSESSMENT)
    framework = version_for(family, framework_id, period)
    framework_id = framework.id
    if await regions.get(session, region) is None:
        raise NotFound(f"No region with Kemendagri code {region!r}.")
    agency = None
    if agency_id is not None:
        # Outside the region the agency does not exist; inside it, its team opens.
        agency = await agencies.get(session, agency_id)
        if agency is None or agency.region_code != region:
            raise NotFound(f"No agency {agency_id} in region {region!r}.")
        policy.require_inside_region(
            principal, region, f"No agency {agency_id} in region {region!r}."
        )
        if not framework.has_assessed_inputs:
            raise invalid(
                "body",
                "/agency",
                "computed view",
                f"{framework.id} is a computed view with no entered values: an agency is "
                "evaluated internally on an instrument the region fills in",
            )
    policy.require_region(principal, region, "act")
    existing = await repository.find_same(session, region, framework_id, period, stage, agency_id)
    if existing is None:
        assessment = Assessment(
            region_code=region,
            framework_id=framework_id,
            period=period,
            stage=stage,
            state=initial_state(framework),
            agency_id=agency_id,
        )
        try:
            # A concurrent request may create the same assessment between the check and here:
            # the unique constraint decides, inside a savepoint so the loser can still answer.
            async with session.begin_nested():
                await repository.add(session, assessment)
        except IntegrityError:
            existing = await repository.find_same(
                session, region, framework_id, period, stage, agency_id
            )
            if existing is None:
                raise
    if existing is not None:
        whose = f"{region}" if agency is None else f"{agency.name} ({region}, internal)"
        raise Conflict(
            f"Assessment {existing} already covers {whose} {framework_id} {period}.",
            assessment_id=str(existing),
        )
    audit.record(
        session,
        context,
        action="assessment.create",
        entity="assessment",
        entity_id=str(assessment.id),
        after={
            "region": region,
            "framework": framework_id,
            "period": period,
            "stage": stage,
            "state": assessment.state,
        }
        | ({} if agency_id is None else {"agency": str(agency_id), "internal": True}),
    )
    return assessment


def version_for(family: str | None, framework_id: str | None, period: int) -> Framework:
    """The framework an assessment of ``period`` is opened on: the version of ``family`` in
    force for the period, or the explicit ``framework_id``, which must be in force for it."""
    if framework_id is not None:
        framework = registry().get(framework_id)
        if framework is None:
            raise NotFound(f"No framework {framework_id!r}.")
        if family is not None and framework.family != family:
            raise invalid(
                "body",
                "/framework",
                "family",
                f"{framework_id} is a version of {framework.family}, not of {family}",
            )
        if not framework.in_force.covers(period):
            current = in_force(framework.family, period)
            instead = (
                f"; the {framework.family} version for {period} is {current.id}"
                if current is not None
                else f"; no {framework.family} version is in force for {period}"
            )
            raise invalid(
                "body",
                "/framework",
                "in_force",
                f"{framework_id} is in force for {framework.in_force.describe()}, "
                f"not for {period}{instead}",
            )
        return framework
    assert family is not None  # the body names one or the other
    versions = families().get(family)
    if versions is None:
        raise invalid(
            "body",
            "/family",
            "unknown",
            f"no instrument family {family!r} (known: {', '.join(families())})",
        )
    current = in_force(family, period)
    if current is None:
        spans = "; ".join(f"{v.id}: {v.in_force.describe()}" for v in versions)
        raise invalid(
            "body",
            "/period",
            "in_force",
            f"no {family} version is in force for {period} ({spans})",
        )
    return current


async def set_inputs(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    values: dict[str, Any],
    note: str | None,
    queue: Queue | None,
    sources: dict[str, tuple[str, date]] | None = None,
) -> tuple[Assessment, Value]:
    """Region operators write self-assessed values, assessors verified ones; a value of a leaf
    scored from an outside index comes with its source and date (``sources``). Returns the
    assessment and which value was written."""
    sources = sources or {}
    principal = context.principal
    policy.require_ever(principal, Action.ENTER_VALUES)
    assessment = await _locked(session, assessment_id)
    await policy.require_on(session, principal, Action.ENTER_VALUES, assessment)
    value = policy.value_entered(principal, assessment)
    allowed = VALUE_STATES[value]
    if assessment.state == AssessmentState.PUBLISHED:
        raise Conflict(
            "The assessment is published and its inputs are locked; a correction "
            "reopens it first (transition to in_review with a reason)."
        )
    if assessment.state not in allowed:
        raise Conflict(
            f"{value} values are entered in {', '.join(sorted(allowed))}; the "
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
        if not node.is_leaf:
            raise invalid(
                "body",
                f"/values/{node_id}",
                "inner node",
                f"{node_id} is computed from its parts: enter its leaves (the published figures "
                "of a results letter are imported by a ministry-admin as official results)",
            )
        if node.input == "outside" and value is Value.SELF:
            source = node.outside.source if node.outside else "an outside index"
            raise invalid(
                "body",
                f"/values/{node_id}",
                "outside index",
                f"{node_id} is scored from {source}, not self-assessed: an assessor or the "
                "ministry enters its value in review",
            )
        if node.input not in ("assessed", "outside"):
            raise invalid(
                "body",
                f"/values/{node_id}",
                "computed",
                f"{node_id} is {node.input}-driven; it cannot be entered",
            )
    stored = {node_id: _decimal_text(raw) for node_id, raw in values.items()}
    entered = {node_id: text for node_id, text in stored.items() if text is not None}
    for node_id in sources:
        if node_id not in entered or nodes[node_id].input != "outside":
            raise invalid(
                "body",
                f"/sources/{node_id}",
                "not an outside value",
                f"sources name the outside-index values of this write; {node_id} is not one",
            )
    for node_id in entered:
        rule = nodes[node_id].outside
        if rule is not None and node_id not in sources:
            raise invalid(
                "body",
                f"/sources/{node_id}",
                "source required",
                f"{node_id} is scored from {rule.source}: give sources.{node_id} with the "
                "reference its value was taken from and the figure's date (as_of)",
            )
    try:
        evaluate(framework, Inputs(values=entered))  # checks every value against its scale
    except InputError as exc:
        raise invalid("body", f"/values/{exc.node}", "off scale", str(exc)) from None
    # The assessment row is locked above, and every input write takes that lock first.
    existing = await repository.inputs(session, assessment.id, list(values))
    for node_id, text in stored.items():
        row = existing.get(node_id)
        before = None if row is None else {"self": row.self_value, "verified": row.verified_value}
        if row is None:
            row = repository.add_input(session, assessment.id, node_id)
        if value is Value.SELF:
            row.self_value = text
        else:
            row.verified_value = text
        if nodes[node_id].outside is not None:
            row.official_source, row.source_date = sources.get(node_id, (None, None))
        row.note = note if note is not None else row.note
        audit.record(
            session,
            context,
            action=f"input.{value}",
            entity="assessment_input",
            entity_id=f"{assessment.id}/{node_id}",
            before=before,
            after={"self": row.self_value, "verified": row.verified_value}
            | (
                {"source": row.official_source, "as_of": str(row.source_date)}
                if node_id in sources
                else {}
            ),
        )
    await _inputs_changed(session, assessment, queue)
    return assessment, value


async def set_official_results(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    values: dict[str, Any],
    source: str,
    queue: Queue | None,
) -> Assessment:
    """Import the published figures of a results letter (components, domains, the index) as
    the official values of inner nodes: they stand in until verified leaf values exist."""
    policy.require(context.principal, Action.IMPORT_OFFICIAL_RESULTS)
    assessment = await _locked(session, assessment_id)
    await policy.require_on(session, context.principal, Action.IMPORT_OFFICIAL_RESULTS, assessment)
    if assessment.state == AssessmentState.PUBLISHED:
        raise Conflict(
            "The assessment is published and its inputs are locked; a correction "
            "reopens it first (transition to in_review with a reason).",
            state=assessment.state,
        )
    framework = registry()[assessment.framework_id]
    nodes = {node.id: node for node in framework.nodes()}
    for node_id in values:
        node = nodes.get(node_id)
        if node is None or node.is_leaf:
            detail = "unknown node" if node is None else "leaf"
            message = (
                f"unknown node {node_id!r} in {framework.id}"
                if node is None
                else f"{node_id} is a leaf: enter it as a value, not an official result"
            )
            raise invalid("body", f"/values/{node_id}", detail, message)
    stored = {node_id: _decimal_text(raw) for node_id, raw in values.items()}
    try:  # checks every value against its node's scale
        evaluate(framework, Inputs(values={k: v for k, v in stored.items() if v is not None}))
    except InputError as exc:
        raise invalid("body", f"/values/{exc.node}", "off scale", str(exc)) from None
    existing = await repository.inputs(session, assessment.id, list(values))
    for node_id, text in stored.items():
        row = existing.get(node_id) or repository.add_input(session, assessment.id, node_id)
        before = {"official": row.official_value, "source": row.official_source}
        row.official_value, row.official_source = text, None if text is None else source
        audit.record(
            session,
            context,
            action="input.official",
            entity="assessment_input",
            entity_id=f"{assessment.id}/{node_id}",
            before=before,
            after={"official": row.official_value, "source": row.official_source},
        )
    await _inputs_changed(session, assessment, queue)
    return assessment


ASSESSOR_OUTPUT_FIELDS = (
    "evidence_uploaded",
    "interview_confirmed",
    "approved",
    "catatan",
    "rekomendasi",
    "shared_with_region",
)


def _assessor_snapshot(row: AssessorOutput) -> dict[str, Any]:
    return {field: getattr(row, field) for field in ASSESSOR_OUTPUT_FIELDS}


async def set_assessor_output(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    nodes: dict[str, dict[str, Any]],
) -> dict[str, AssessorOutput]:
    """Record the assessor's output on nodes: node id → the fields given (a field left out
    keeps its value, None clears it). Every node is checked before anything is written.
    Returns the rows written, as now stored. No figure depends on it: nothing is recomputed."""
    principal = context.principal
    policy.require_ever(principal, Action.RECORD_ASSESSOR_OUTPUT)
    assessment = await _locked(session, assessment_id)
    await policy.require_on(session, principal, Action.RECORD_ASSESSOR_OUTPUT, assessment)
    if assessment.state not in ASSESSOR_OUTPUT_STATES:
        raise Conflict(
            f"The assessor's output is recorded in {', '.join(sorted(ASSESSOR_OUTPUT_STATES))}; "
            f"the assessment is {assessment.state}.",
            state=assessment.state,
        )
    framework = registry()[assessment.framework_id]
    known = {node.id for node in framework.nodes()}
    for node_id, fields in nodes.items():
        if node_id not in known:
            raise invalid(
                "body",
                f"/nodes/{node_id}",
                "unknown node",
                f"unknown node {node_id!r} in {framework.id}",
            )
        if not fields:
            raise invalid(
                "body", f"/nodes/{node_id}", "empty", f"{node_id}: give at least one field to set"
            )
        for field in fields:
            if field not in ASSESSOR_OUTPUT_FIELDS:
                raise invalid(
                    "body", f"/nodes/{node_id}/{field}", "unknown field", f"unknown field {field!r}"
                )
    existing = await repository.assessor_outputs(session, assessment.id, list(nodes))
    now = datetime.now(UTC)
    written: dict[str, AssessorOutput] = {}
    for node_id, fields in nodes.items():
        row = existing.get(node_id)
        before = None if row is None else _assessor_snapshot(row)
        if row is None:
            row = repository.add_assessor_output(session, assessment.id, node_id)
        for field, given in fields.items():
            # Sharing is yes or no: cleared, it is no.
            setattr(row, field, bool(given) if field == "shared_with_region" else given)
        row.updated_by, row.updated_at = principal.key_id, now
        row.updated_by_person = principal.person.id if principal.person else None
        audit.record(
            session,
            context,
            action="assessor_output.set",
            entity="assessor_output",
            entity_id=f"{assessment.id}/{node_id}",
            before=before,
            after=_assessor_snapshot(row),
        )
        written[node_id] = row
    await session.flush()
    return written


async def _inputs_changed(
    session: AsyncSession, assessment: Assessment, queue: Queue | None
) -> None:
    """After a write of inputs: the assessment is due for a recompute at a new revision."""
    await session.flush()
    await mark_dirty(session, [assessment.id], queue)
    await session.refresh(assessment)  # the revision mark_dirty bumped


def _decimal_text(value: Any) -> Any:
    """Values are kept as decimal text (lists for programme scores): never binary floats."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_decimal_text(item) for item in value]
    return str(value)


async def transition(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    to: AssessmentState,
    reason: str | None,
    queue: Queue | None,
) -> Assessment:
    assessment = await _locked(session, assessment_id)
    await policy.require_visible(session, context.principal, assessment)
    source = assessment.state
    move = TRANSITIONS.get((source, to))
    if move is None or move.by_evidence_request_only:
        raise Conflict(f"An assessment in {source} cannot move to {to}.", state=source)
    policy.require_move(context.principal, policy.move_roles(move.roles, assessment), source, to)
    await policy.require_scope(session, context.principal, assessment)
    if move.needs_reason and not (reason and reason.strip()):
        message = "Reopening a published assessment is a correction: give a reason."
        raise invalid("body", "/reason", "required", message)
    await _move(
        session,
        context,
        assessment,
        to,
        action="assessment.transition",
        after={"reason": reason} if reason else {},
    )
    if AssessmentState.PUBLISHED in (source, to):
        # Linked views read only published figures: they follow publication and corrections
        # (the assessment's own result does not change).
        await mark_followers_dirty(session, [assessment], queue)
    if to == AssessmentState.PUBLISHED:
        await webhooks.emit(
            session,
            "assessment.published",
            {
                "assessment_id": str(assessment.id),
                "region": assessment.region_code,
                "framework": assessment.framework_id,
                "period": assessment.period,
            }
            | webhooks.internal_marker(assessment),
            queue,
        )
    return assessment


async def assign(
    session: AsyncSession, context: Context, assessment_id: uuid.UUID, key_id: uuid.UUID
) -> None:
    """Assign an assessor's key to the assessment (once: assigning again changes nothing)."""
    policy.require(context.principal, Action.ASSIGN_ASSESSORS)
    assessment = await _locked(session, assessment_id)
    await policy.require_on(session, context.principal, Action.ASSIGN_ASSESSORS, assessment)
    key = await keys.get(session, key_id)
    if key is None or key.role != Role.ASSESSOR or key.revoked_at is not None:
        raise invalid("body", "/key_id", "not an assessor", f"{key_id} is not an assessor key")
    if not await repository.is_assigned(session, assessment.id, key_id):
        await repository.assign(session, assessment.id, key_id)
        audit.record(
            session,
            context,
            action="assessment.assign",
            entity="assessment",
            entity_id=str(assessment.id),
            after={"assessor": str(key_id), "name": key.name},
        )


async def assign_person(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    issuers: tuple[OidcIssuer, ...],
    *,
    subject: str,
    issuer: str | None,
) -> Person:
    """Assign a person, named by their SSO's subject identifier (``sub``), to the assessment.
    Their role comes from their token when they sign in: only an assessor's sign-in acts on
    the assignment. Someone who has never signed in is recorded now."""
    policy.require(context.principal, Action.ASSIGN_ASSESSORS)
    assessment = await _locked(session, assessment_id)
    person = await access.person_for_assignment(session, issuers, subject, issuer)
    if not await repository.is_assigned(session, assessment.id, person_id=person.id):
        await repository.assign(session, assessment.id, person_id=person.id)
        audit.record(
            session,
            context,
            action="assessment.assign",
            entity="assessment",
            entity_id=str(assessment.id),
            after={
                "person": str(person.id),
                "issuer": person.issuer,
                "sub": person.subject,
                "name": person.name,
            },
        )
    return person


async def request_evidence(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    node_ids: list[str],
    message: str,
    due_date: date | None,
    queue: Queue | None,
) -> EvidenceRequest:
    """Ask the region for more evidence: the move into evidence_requested, made by request."""
    principal = context.principal
    policy.require_ever(principal, Action.REQUEST_EVIDENCE)
    assessment = await _locked(session, assessment_id)
    await policy.require_on(session, principal, Action.REQUEST_EVIDENCE, assessment)
    source = assessment.state
    move = TRANSITIONS.get((source, AssessmentState.EVIDENCE_REQUESTED))
    if move is None:
        raise Conflict(
            f"Evidence is requested during review; the assessment is {source}.", state=source
        )
    policy.require_move(
        principal,
        policy.move_roles(move.roles, assessment),
        source,
        AssessmentState.EVIDENCE_REQUESTED,
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
        requested_by_person=principal.person.id if principal.person else None,
    )
    await repository.add_evidence_request(session, evidence_request)
    await _move(
        session,
        context,
        assessment,
        AssessmentState.EVIDENCE_REQUESTED,
        action="evidence.request",
        after={"request": str(evidence_request.id), "node_ids": node_ids},
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
        }
        | webhooks.internal_marker(assessment),
        queue,
    )
    return evidence_request


async def requesters(
    session: AsyncSession, requests: list[EvidenceRequest]
) -> dict[uuid.UUID, ActorOut]:
    """Who asked for each evidence request (by request id): the key or the person."""
    found = await keys.keys_by_id(session, [r.requested_by for r in requests if r.requested_by])
    people = await keys.people(
        session, [r.requested_by_person for r in requests if r.requested_by_person]
    )
    named: dict[uuid.UUID, ActorOut] = {}
    for request in requests:
        if request.requested_by_person in people:
            person = people[request.requested_by_person]
            named[request.id] = ActorOut(
                kind="person", id=person.id, name=person.name, sub=person.subject, nip=person.nip
            )
        elif request.requested_by in found:
            key = found[request.requested_by]
            named[request.id] = ActorOut(kind="key", id=key.id, name=key.name)
    return named


async def evidence_requests(
    session: AsyncSession,
    context: Context,
    assessment_id: uuid.UUID,
    *,
    answered: bool | None,
    agency: uuid.UUID | None = None,
) -> list[EvidenceRequest]:
    """The assessment's evidence requests, for whoever may see the assessment (else 404);
    with ``agency``, those naming an indicator it answers for (the region's keys only: who
    answers for what is the region's own)."""
    assessment = await policy.visible_assessment(session, context.principal, assessment_id)
    found = list(await repository.evidence_requests(session, assessment_id, answered=answered))
    if agency is None:
        return found
    owned = await agencies.get(session, agency)
    if owned is None or owned.region_code != assessment.region_code:
        raise NotFound(f"No agency {agency} in region {assessment.region_code!r}.")
    policy.require_inside_region(context.principal, assessment.region_code, f"No agency {agency}.")
    nodes = await agencies.nodes_of(session, assessment.id, agency)
    return [request for request in found if nodes & set(request.node_ids)]
