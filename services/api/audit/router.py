"""The audit trail, read-only: there is no API that edits or deletes it (and the database
refuses UPDATE and DELETE on it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from services.kit.auth import CurrentPrincipal, require_role
from services.kit.db import DbSession
from services.kit.pagination import decode_cursor, encode_cursor
from services.models import AuditEvent

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", summary="Who did what, when, with the state before and after")
async def list_audit(
    session: DbSession,
    principal: CurrentPrincipal,
    entity: Annotated[str | None, Query(examples=["assessment"])] = None,
    entity_id: Annotated[str | None, Query()] = None,
    action: Annotated[str | None, Query(examples=["assessment.transition"])] = None,
    actor: Annotated[uuid.UUID | None, Query(description="API key id")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Newest first."""
    require_role(principal, "ministry-admin")
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    filters = {
        AuditEvent.entity: entity,
        AuditEvent.entity_id: entity_id,
        AuditEvent.action: action,
        AuditEvent.actor_id: actor,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if cursor:
        query = query.where(AuditEvent.id < decode_cursor(cursor, int)[0])
    rows = (await session.scalars(query)).all()
    items = [
        {
            "id": row.id,
            "at": row.at.isoformat(),
            "actor_id": row.actor_id,
            "actor_name": row.actor_name,
            "role": row.role,
            "action": row.action,
            "entity": row.entity,
            "entity_id": row.entity_id,
            "before": row.before,
            "after": row.after,
            "request_id": row.request_id,
        }
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1]["id"]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}
