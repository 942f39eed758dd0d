"""SQL for the audit trail: append, and read newest first. Nothing updates or deletes it (the
database refuses UPDATE, DELETE and TRUNCATE on the table)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context
from services.models import AuditEvent


def add(session: AsyncSession, event: AuditEvent) -> None:
    session.add(event)


def actor(context: Context) -> dict[str, Any]:
    """The bound parameters :sql:`insert_each` names: who acts, under which request."""
    principal, person = context.principal, context.principal.person
    return {
        "audit_actor_id": principal.key_id,
        "audit_actor_person_id": person.id if person else None,
        "audit_actor_subject": person.subject if person else None,
        "audit_actor_nip": person.nip if person else None,
        "audit_actor_name": principal.name,
        "audit_role": str(principal.role),
        "audit_request_id": context.request_id,
    }


def insert_each(rows: str) -> str:
    """The set-based form of :func:`add`, for a statement that changes many rows at once: an
    INSERT (to use as a data-modifying CTE) of one audit row per row of ``rows``, a SELECT of
    (action, entity, entity_id, before, after), by the actor whose :func:`actor` parameters
    the statement is run with."""
    # ``rows`` is SQL written in code, never input.
    return f"""
        INSERT INTO audit_event (actor_id, actor_person_id, actor_subject, actor_nip,
                                 actor_name, role, action, entity, entity_id,
                                 before, after, request_id)
        SELECT CAST(:audit_actor_id AS uuid), CAST(:audit_actor_person_id AS uuid),
               CAST(:audit_actor_subject AS varchar), CAST(:audit_actor_nip AS varchar),
               :audit_actor_name, :audit_role, r.action,
               r.entity, r.entity_id, r.before, r.after, :audit_request_id
        FROM ({rows}) AS r(action, entity, entity_id, before, after)
        RETURNING 1
    """  # noqa: S608


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
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(column == value)
    if where.actor is not None:  # a key or a person
        query = query.where(
            or_(AuditEvent.actor_id == where.actor, AuditEvent.actor_person_id == where.actor)
        )
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.at < where.until)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return (await session.scalars(query)).all()
