"""The audit trail, read-only: there is no API that edits or deletes it (and the database
refuses UPDATE, DELETE and TRUNCATE on it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from services.api.audit.schemas import AuditEventOut, AuditPage
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal
from services.domain.access.policy import Action
from services.domain.audit import repository
from services.domain.audit.repository import AuditFilter
from services.kit.db import DbSession
from services.kit.pagination import decode_cursor, encode_cursor

router = APIRouter(tags=["audit"])


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    summary="Who did what, when, with the state before and after",
)
async def list_audit(
    session: DbSession,
    principal: CurrentPrincipal,
    entity: Annotated[str | None, Query(examples=["assessment"])] = None,
    entity_id: Annotated[str | None, Query()] = None,
    action: Annotated[str | None, Query(examples=["assessment.transition"])] = None,
    actor: Annotated[uuid.UUID | None, Query(description="An API key id or a person id")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Newest first."""
    policy.require(principal, Action.READ_AUDIT)
    rows = await repository.page(
        session,
        AuditFilter(entity, entity_id, action, actor, since, until),
        before_id=decode_cursor(cursor, int)[0] if cursor else None,
        limit=limit + 1,
    )
    items = [AuditEventOut.model_validate(row) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=next_cursor)
