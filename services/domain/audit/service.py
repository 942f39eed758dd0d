"""The audit trail: one append-only row per write (who, role, what, before, after, request).

Every write is recorded through :func:`record`, in the write's own transaction, under the
request id of the request that made it. (A metric import records its updates in the same
statement that applies them: services/ingest/metric/repository.py, one row per update.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context
from services.domain.audit import repository
from services.models import AuditEvent


def record(
    session: AsyncSession,
    context: Context,
    *,
    action: str,
    entity: str,
    entity_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    principal, person = context.principal, context.principal.person
    repository.add(
        session,
        AuditEvent(
            actor_id=principal.key_id,
            actor_person_id=person.id if person else None,
            actor_subject=person.subject if person else None,
            actor_nip=person.nip if person else None,
            actor_name=principal.name,
            role=principal.role,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before,
            after=after,
            request_id=context.request_id,
        ),
    )
