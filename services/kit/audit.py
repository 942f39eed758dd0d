"""The audit trail: one append-only row per write (who, role, what, before, after, request)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.auth import Principal
from services.models import AuditEvent


def record(
    session: AsyncSession,
    principal: Principal,
    *,
    action: str,
    entity: str,
    entity_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor_id=principal.key_id,
            actor_name=principal.name,
            role=principal.role,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before,
            after=after,
            request_id=request_id,
        )
    )
