"""SQL for the agency views: the internal assessments of a region's agencies and their
results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, ResultNode, ResultState


async def internal_assessments(
    session: AsyncSession, region_code: str, framework_id: str, period: int
) -> Sequence[Row[Assessment, ResultState | None]]:
    """The final internal assessments of the region's agencies on ``framework_id`` for
    ``period``, with their result state."""
    return (
        await session.execute(
            select(Assessment, ResultState)
            .outerjoin(ResultState, ResultState.assessment_id == Assessment.id)
            .where(
                Assessment.region_code == region_code,
                Assessment.agency_id.is_not(None),
                Assessment.framework_id == framework_id,
                Assessment.period == period,
                Assessment.stage == "final",
            )
        )
    ).all()


async def node_values(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> Sequence[Row[uuid.UUID, str, Decimal | None]]:
    """Every stored node value of these assessments."""
    if not assessment_ids:
        return []
    return (
        await session.execute(
            select(ResultNode.assessment_id, ResultNode.node_id, ResultNode.value).where(
                ResultNode.assessment_id.in_(list(assessment_ids))
            )
        )
    ).all()
