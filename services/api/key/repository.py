"""SQL for the caller's own view: the assessments assigned to its key, or to the person."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.result.repository import AssessmentRow
from services.models import Agency, Assessment, AssessmentAssignment, Region, ResultState


async def assigned(
    session: AsyncSession, key_id: uuid.UUID | None, person_id: uuid.UUID | None = None
) -> Sequence[AssessmentRow]:
    """The assessments assigned to ``key_id`` (or the person ``person_id``), as rows of the shape
    :func:`services.api.result.service.assessment_out` renders: newest period first."""
    query = (
        select(Assessment, ResultState, Region.name, Region.province_code, Agency)
        .join(Region, Region.code == Assessment.region_code)
        .outerjoin(ResultState, ResultState.assessment_id == Assessment.id)
        .outerjoin(Agency, Agency.id == Assessment.agency_id)
        .join(AssessmentAssignment, AssessmentAssignment.assessment_id == Assessment.id)
        # Assessors are assigned to official assessments only (the policy).
        .where(
            AssessmentAssignment.key_id == key_id
            if key_id is not None
            else AssessmentAssignment.person_id == person_id,
            Assessment.agency_id.is_(None),
        )
        .order_by(
            Assessment.period.desc(),
            Assessment.framework_id,
            Assessment.region_code,
            Assessment.id,
        )
    )
    return (await session.execute(query)).all()
