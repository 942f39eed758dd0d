"""SQL for assessments: find, lock, create, assign, inputs, assessor output, and who may see
which."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Visibility
from services.domain.assessment.states import Value
from services.models import (
    Assessment,
    AssessmentAssignment,
    AssessmentInput,
    AssessmentState,
    AssessorOutput,
    EvidenceRequest,
)


def visible(visibility: Visibility) -> ColumnElement[bool]:
    """The policy's visibility as a condition on ``assessment``."""
    official: ColumnElement[bool] = Assessment.agency_id.is_(None)
    if not visibility.everything:
        seen: ColumnElement[bool] = Assessment.state == AssessmentState.PUBLISHED
        if visibility.regions:
            seen = or_(seen, Assessment.region_code.in_(sorted(visibility.regions)))
        if visibility.assigned_to is not None or visibility.assigned_person is not None:
            assigned = select(AssessmentAssignment.assessment_id).where(
                _assignee(visibility.assigned_to, visibility.assigned_person)
            )
            seen = or_(seen, Assessment.id.in_(assigned))
        official = and_(official, seen)
    if not visibility.internal:
        return official
    internal = and_(
        Assessment.agency_id.is_not(None),
        Assessment.region_code.in_(sorted(visibility.internal)),
    )
    return or_(official, internal)


def _assignee(key_id: uuid.UUID | None, person_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Assignments of this key or this person (one of them is given)."""
    if key_id is not None:
        return AssessmentAssignment.key_id == key_id
    return AssessmentAssignment.person_id == person_id


async def get(
    session: AsyncSession, assessment_id: uuid.UUID, visibility: Visibility | None = None
) -> Assessment | None:
    """The assessment, or None when it does not exist or ``visibility`` hides it."""
    query = select(Assessment).where(Assessment.id == assessment_id)
    if visibility is not None:
        query = query.where(visible(visibility))
    found: Assessment | None = await session.scalar(query)
    return found


async def lock(session: AsyncSession, assessment_id: uuid.UUID) -> Assessment | None:
    """The assessment locked for this transaction: every write to it takes this lock first."""
    return await session.get(Assessment, assessment_id, with_for_update=True)


async def lock_shared(session: AsyncSession, assessment_id: uuid.UUID) -> Assessment | None:
    """The assessment, read-locked: writers attached to it (uploads) go side by side, a
    workflow move (which takes :func:`lock`) waits for them and they for it."""
    return await session.get(Assessment, assessment_id, with_for_update={"read": True})


async def find_same(
    session: AsyncSession,
    region: str,
    framework_id: str,
    period: int,
    stage: str,
    agency_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """The official assessment (``agency_id`` None) or the agency's internal one covering
    these, if any."""
    agency = (
        Assessment.agency_id.is_(None) if agency_id is None else Assessment.agency_id == agency_id
    )
    found: uuid.UUID | None = await session.scalar(
        select(Assessment.id).where(
            Assessment.region_code == region,
            Assessment.framework_id == framework_id,
            Assessment.period == period,
            Assessment.stage == stage,
            agency,
        )
    )
    return found


async def add(session: AsyncSession, assessment: Assessment) -> None:
    session.add(assessment)
    await session.flush()


async def is_assigned(
    session: AsyncSession,
    assessment_id: uuid.UUID,
    key_id: uuid.UUID | None = None,
    *,
    person_id: uuid.UUID | None = None,
) -> bool:
    """Whether the key ``key_id`` (or the person ``person_id``) is assigned to the assessment."""
    if key_id is None and person_id is None:
        return False
    found = await session.scalar(
        select(AssessmentAssignment.id).where(
            AssessmentAssignment.assessment_id == assessment_id, _assignee(key_id, person_id)
        )
    )
    return found is not None


async def assign(
    session: AsyncSession,
    assessment_id: uuid.UUID,
    key_id: uuid.UUID | None = None,
    *,
    person_id: uuid.UUID | None = None,
) -> None:
    session.add(
        AssessmentAssignment(assessment_id=assessment_id, key_id=key_id, person_id=person_id)
    )
    await session.flush()


async def inputs(
    session: AsyncSession, assessment_id: uuid.UUID, node_ids: Sequence[str]
) -> dict[str, AssessmentInput]:
    rows = await session.scalars(
        select(AssessmentInput).where(
            AssessmentInput.assessment_id == assessment_id,
            AssessmentInput.node_id.in_(list(node_ids)),
        )
    )
    return {row.node_id: row for row in rows}


async def entered_values(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, dict[Value, Any]]]:
    """Per assessment: node id → its entered values (self, verified, official), those given."""
    rows = await session.execute(
        select(
            AssessmentInput.assessment_id,
            AssessmentInput.node_id,
            AssessmentInput.self_value,
            AssessmentInput.verified_value,
            AssessmentInput.official_value,
        ).where(AssessmentInput.assessment_id.in_(assessment_ids))
    )
    found: dict[uuid.UUID, dict[str, dict[Value, Any]]] = {i: {} for i in assessment_ids}
    for assessment_id, node_id, self_value, verified_value, official_value in rows:
        given = {
            Value.SELF: self_value,
            Value.VERIFIED: verified_value,
            Value.OFFICIAL: official_value,
        }
        found[assessment_id][node_id] = {kind: v for kind, v in given.items() if v is not None}
    return found


def add_input(session: AsyncSession, assessment_id: uuid.UUID, node_id: str) -> AssessmentInput:
    """A new input row of the assessment, written at the next flush."""
    row = AssessmentInput(assessment_id=assessment_id, node_id=node_id)
    session.add(row)
    return row


async def assessor_outputs(
    session: AsyncSession, assessment_id: uuid.UUID, node_ids: Sequence[str]
) -> dict[str, AssessorOutput]:
    rows = await session.scalars(
        select(AssessorOutput).where(
            AssessorOutput.assessment_id == assessment_id,
            AssessorOutput.node_id.in_(list(node_ids)),
        )
    )
    return {row.node_id: row for row in rows}


def add_assessor_output(
    session: AsyncSession, assessment_id: uuid.UUID, node_id: str
) -> AssessorOutput:
    """A new assessor-output row of the assessment (nothing judged, not shared), written at
    the next flush."""
    row = AssessorOutput(assessment_id=assessment_id, node_id=node_id, shared_with_region=False)
    session.add(row)
    return row


async def add_evidence_request(session: AsyncSession, request: EvidenceRequest) -> None:
    session.add(request)
    await session.flush()
    await session.refresh(request)


async def evidence_requests(
    session: AsyncSession, assessment_id: uuid.UUID, *, answered: bool | None
) -> Sequence[EvidenceRequest]:
    """The assessment's evidence requests, oldest first: open, answered, or all (None)."""
    query = select(EvidenceRequest).where(EvidenceRequest.assessment_id == assessment_id)
    if answered is True:
        query = query.where(EvidenceRequest.answered_at.is_not(None))
    elif answered is False:
        query = query.where(EvidenceRequest.answered_at.is_(None))
    return (await session.scalars(query.order_by(EvidenceRequest.created_at))).all()


async def lock_evidence_request(
    session: AsyncSession, request_id: uuid.UUID
) -> EvidenceRequest | None:
    return await session.get(EvidenceRequest, request_id, with_for_update=True)
