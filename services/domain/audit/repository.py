"""SQL for the audit trail: append, and read newest first. Nothing updates or deletes it (the
database refuses UPDATE, DELETE and TRUNCATE on the table)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import AuditEvent


def add(session: AsyncSession, event: AuditEvent) -> None:
    session.add(event)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    entity: str | None = None
    entity_id: str | None = None
    action: str | None = None
    actor: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


async def page(
    session: AsyncSession, where: AuditFilter, *, before_id: int | None, limit: int
) -> Sequence[AuditEvent]:
    """Events matching ``where``, newest first, older than ``before_id`` (keyset paging)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    equal = {
        AuditEvent.entity: where.entity,
        AuditEvent.entity_id: where.entity_id,
        AuditEvent.action: where.action,
        AuditEvent.actor_id: where.actor,
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.at < where.until)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return (await session.scalars(query)).all()
