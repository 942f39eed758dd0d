"""API keys as the API answers them: the key list, the caller's own key and assignments."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.key import repository
from services.api.key.schemas import KeyOut, KeyPage, MeOut
from services.api.result.schemas import AssessmentOut
from services.api.result.service import assessment_out
from services.domain.access import service as keys
from services.domain.access.principal import Principal
from services.kit.errors import invalid
from services.kit.pagination import decode_cursor, encode_cursor
from services.models import Role


def _before(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, key_id = decode_cursor(cursor, str, uuid.UUID)
    try:
        at = datetime.fromisoformat(created)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise invalid(
            "query",
            "/cursor",
            "malformed cursor",
            "query /cursor: not a cursor this endpoint issued",
        )
    return at, uuid.UUID(key_id)


async def key_page(
    session: AsyncSession, *, revoked: bool | None, cursor: str | None, limit: int
) -> KeyPage:
    rows = await keys.keys(
        session,
        before=_before(cursor) if cursor else None,
        revoked=revoked,
        limit=limit + 1,
    )
    items = [KeyOut.model_validate(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    next_cursor = encode_cursor(last.created_at.isoformat(), str(last.id)) if last else None
    return KeyPage(items=items, next_cursor=next_cursor)


def me(principal: Principal) -> MeOut:
    person = principal.person
    if person is not None:
        return MeOut(
            id=person.id,
            kind="person",
            name=principal.name,
            role=principal.role,
            regions=sorted(principal.regions),
            issuer=person.issuer,
            sub=person.subject,
            nip=person.nip,
        )
    assert principal.key_id is not None  # a request's principal is a key's or a person's
    return MeOut(
        id=principal.key_id,
        kind="key",
        name=principal.name,
        role=principal.role,
        regions=sorted(principal.regions),
    )


async def assignments(session: AsyncSession, principal: Principal) -> list[AssessmentOut]:
    """An assessor's assigned assessments; nothing for the other roles (they are not assigned)."""
    if principal.role != Role.ASSESSOR:
        return []
    person_id = principal.person.id if principal.person else None
    if principal.key_id is None and person_id is None:
        return []
    rows = await repository.assigned(session, principal.key_id, person_id)
    return [assessment_out(row) for row in rows]
