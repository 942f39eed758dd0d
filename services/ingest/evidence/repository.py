"""SQL for evidence: items, their revisions, and the content-addressed objects they point at."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import EvidenceItem, EvidenceObject, EvidenceRevision

Revisions = dict[uuid.UUID, list[tuple[EvidenceRevision, EvidenceObject]]]


async def get_item(session: AsyncSession, item_id: uuid.UUID) -> EvidenceItem | None:
    return await session.get(EvidenceItem, item_id)


async def lock_item(session: AsyncSession, item_id: uuid.UUID) -> EvidenceItem | None:
    """The item locked for this transaction: a new revision of it takes this lock first."""
    return await session.get(EvidenceItem, item_id, with_for_update=True)


async def items(
    session: AsyncSession,
    assessment_id: uuid.UUID,
    node_id: str | None,
    agency_id: uuid.UUID | None = None,
) -> Sequence[EvidenceItem]:
    """The assessment's items, oldest first; with ``node_id`` only those supporting it, with
    ``agency_id`` only those the agency is responsible for."""
    query = select(EvidenceItem).where(EvidenceItem.assessment_id == assessment_id)
    if node_id:
        query = query.where(EvidenceItem.node_ids.contains([node_id]))
    if agency_id is not None:
        query = query.where(EvidenceItem.agency_id == agency_id)
    return (await session.scalars(query.order_by(EvidenceItem.created_at))).all()


async def revisions(session: AsyncSession, item_ids: Sequence[uuid.UUID]) -> Revisions:
    """Every revision of these items with the object it stores, by item, oldest first."""
    rows = await session.execute(
        select(EvidenceRevision, EvidenceObject)
        .join(EvidenceObject, EvidenceObject.sha256 == EvidenceRevision.sha256)
        .where(EvidenceRevision.item_id.in_(list(item_ids)))
        .order_by(EvidenceRevision.item_id, EvidenceRevision.revision)
    )
    grouped: Revisions = {}
    for revision, stored in rows:
        grouped.setdefault(revision.item_id, []).append((revision, stored))
    return grouped


async def lock_upload(session: AsyncSession, assessment_id: uuid.UUID, sha256: str) -> None:
    """Identical uploads to one assessment wait for each other here, until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"),
        {"lock": f"evidence:{assessment_id}:{sha256}"},
    )


async def identical_item(
    session: AsyncSession, assessment_id: uuid.UUID, sha256: str, node_ids: list[str]
) -> EvidenceItem | None:
    """An item of this assessment for exactly these nodes whose latest revision is these bytes."""
    found: EvidenceItem | None = await session.scalar(
        select(EvidenceItem)
        .join(
            EvidenceRevision,
            (EvidenceRevision.item_id == EvidenceItem.id)
            & (EvidenceRevision.revision == EvidenceItem.latest_revision),
        )
        .where(
            EvidenceItem.assessment_id == assessment_id,
            EvidenceRevision.sha256 == sha256,
            EvidenceItem.node_ids == node_ids,
        )
        .limit(1)
    )
    return found


async def get_object(session: AsyncSession, sha256: str) -> EvidenceObject | None:
    return await session.get(EvidenceObject, sha256)


async def add_object(
    session: AsyncSession, *, sha256: str, size: int, content_type: str, storage_key: str
) -> None:
    """Record stored bytes; another assessment's upload of the same bytes may be recording them
    right now, and then this does nothing."""
    await session.execute(
        insert(EvidenceObject)
        .values(sha256=sha256, size=size, content_type=content_type, storage_key=storage_key)
        .on_conflict_do_nothing(index_elements=["sha256"])
    )


async def add_item(session: AsyncSession, item: EvidenceItem) -> None:
    session.add(item)
    await session.flush()


async def add_revision(session: AsyncSession, revision: EvidenceRevision) -> None:
    """Add the revision and flush it with everything else pending (the item's new latest
    revision, the answered request, the audit row)."""
    session.add(revision)
    await session.flush()
