"""SQL for agencies (OPD) and the agency responsible (PJ) for each indicator of an assessment:
shared by the gateway (agencies, responsibilities, views) and ingest (evidence names its
agency)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Agency, Assessment, NodeResponsibility


async def get(session: AsyncSession, agency_id: uuid.UUID) -> Agency | None:
    return await session.get(Agency, agency_id)


async def lock(session: AsyncSession, agency_id: uuid.UUID) -> Agency | None:
    return await session.get(Agency, agency_id, with_for_update=True)


async def page(
    session: AsyncSession, region_code: str, *, after: tuple[str, str] | None, limit: int
) -> Sequence[Agency]:
    """The region's agencies by name (then id), after the cursor's (name, id)."""
    query = (
        select(Agency)
        .where(Agency.region_code == region_code)
        .order_by(Agency.name, Agency.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Agency.name, Agency.id) > (after[0], uuid.UUID(after[1])))
    return (await session.scalars(query)).all()


async def of_region(session: AsyncSession, region_code: str) -> list[Agency]:
    """Every agency of the region (a few dozen), by name."""
    return list(
        (
            await session.scalars(
                select(Agency).where(Agency.region_code == region_code).order_by(Agency.name)
            )
        ).all()
    )


async def by_ids(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Agency]:
    if not ids:
        return {}
    rows = await session.scalars(select(Agency).where(Agency.id.in_(list(ids))))
    return {row.id: row for row in rows}


async def named(
    session: AsyncSession, region_code: str, name: str, *, other_than: uuid.UUID | None = None
) -> Agency | None:
    """The region's agency with this name (case-insensitive), other than ``other_than``."""
    query = select(Agency).where(
        Agency.region_code == region_code, func.lower(Agency.name) == name.lower()
    )
    if other_than is not None:
        query = query.where(Agency.id != other_than)
    found: Agency | None = await session.scalar(query.limit(1))
    return found


async def add(session: AsyncSession, agency: Agency) -> None:
    session.add(agency)
    await session.flush()
    await session.refresh(agency)


async def remove(session: AsyncSession, agency: Agency) -> None:
    await session.delete(agency)
    await session.flush()


async def internal_assessments(session: AsyncSession, agency_id: uuid.UUID) -> int:
    """How many internal assessments evaluate the agency."""
    return int(
        await session.scalar(
            select(func.count()).select_from(Assessment).where(Assessment.agency_id == agency_id)
        )
        or 0
    )


async def responsibility_count(session: AsyncSession, agency_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(NodeResponsibility)
            .where(NodeResponsibility.agency_id == agency_id)
        )
        or 0
    )


async def responsibilities(session: AsyncSession, assessment_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """Node id → the agency responsible for it, in the assessment."""
    rows = await session.execute(
        select(NodeResponsibility.node_id, NodeResponsibility.agency_id).where(
            NodeResponsibility.assessment_id == assessment_id
        )
    )
    return {node_id: agency_id for node_id, agency_id in rows}


async def set_responsibilities(
    session: AsyncSession, assessment_id: uuid.UUID, given: Mapping[str, uuid.UUID | None]
) -> None:
    """Name the agency responsible for each node given; None: none."""
    cleared = [node for node, agency in given.items() if agency is None]
    if cleared:
        await session.execute(
            delete(NodeResponsibility).where(
                NodeResponsibility.assessment_id == assessment_id,
                NodeResponsibility.node_id.in_(cleared),
            )
        )
    named_rows = [
        {"assessment_id": assessment_id, "node_id": node, "agency_id": agency}
        for node, agency in given.items()
        if agency is not None
    ]
    if named_rows:
        statement = insert(NodeResponsibility).values(named_rows)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[NodeResponsibility.assessment_id, NodeResponsibility.node_id],
                set_={"agency_id": statement.excluded.agency_id, "updated_at": func.now()},
            )
        )


async def nodes_of(
    session: AsyncSession, assessment_id: uuid.UUID, agency_id: uuid.UUID
) -> set[str]:
    """The nodes of the assessment the agency answers for."""
    rows = await session.scalars(
        select(NodeResponsibility.node_id).where(
            NodeResponsibility.assessment_id == assessment_id,
            NodeResponsibility.agency_id == agency_id,
        )
    )
    return set(rows)
