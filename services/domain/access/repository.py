"""SQL for API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import ApiKey, Person

# A person's last_seen_at is written at most this often (not on every request).
_SEEN_EVERY = timedelta(minutes=5)


async def by_secret_hash(session: AsyncSession, secret_hash: str) -> ApiKey | None:
    found: ApiKey | None = await session.scalar(
        select(ApiKey).where(ApiKey.secret_hash == secret_hash)
    )
    return found


async def get(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def add(session: AsyncSession, key: ApiKey) -> ApiKey:
    session.add(key)
    await session.flush()
    return key


async def lock(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    """The key locked for this transaction (revocation and rotation take this lock first),
    read afresh from the database."""
    found: ApiKey | None = await session.scalar(
        select(ApiKey)
        .where(ApiKey.id == key_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return found


async def page(
    session: AsyncSession,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    revoked: bool | None = None,
    limit: int | None = None,
) -> Sequence[ApiKey]:
    """Keys newest first (ties by id), older than ``before`` (created_at, id); ``revoked``
    True or False keeps only revoked or live ones; ``limit`` None: all of them."""
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if before is not None:
        query = query.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(*before))
    if revoked is not None:
        query = query.where(
            ApiKey.revoked_at.is_not(None) if revoked else ApiKey.revoked_at.is_(None)
        )
    if limit is not None:
        query = query.limit(limit)
    return (await session.scalars(query)).all()


async def person_named(session: AsyncSession, *, issuer: str, subject: str) -> Person:
    """The person ``subject`` of ``issuer``, created (without name) if absent."""
    query = select(Person).where(Person.issuer == issuer, Person.subject == subject)
    found: Person | None = await session.scalar(query)
    if found is None:
        # Two first requests of one person may race: one inserts, both read it.
        await session.execute(
            insert(Person)
            .values(id=uuid.uuid4(), issuer=issuer, subject=subject)
            .on_conflict_do_nothing(index_elements=["issuer", "subject"])
        )
        found = await session.scalar(query)
    assert found is not None
    return found


async def person_seen(
    session: AsyncSession, *, issuer: str, subject: str, name: str | None, nip: str | None
) -> Person:
    """The person signing in, recorded or refreshed: name and NIP as their token now says (a
    write only when they changed, or to move last_seen_at on after a while)."""
    person = await person_named(session, issuer=issuer, subject=subject)
    now = datetime.now(UTC)
    seen = person.last_seen_at
    if (person.name, person.nip) != (name, nip) or seen is None or now - seen > _SEEN_EVERY:
        person.name, person.nip, person.last_seen_at = name, nip, now
        await session.flush()
    return person


async def people(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Person]:
    rows = await session.scalars(select(Person).where(Person.id.in_(list(ids))))
    return {row.id: row for row in rows}


async def keys_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ApiKey]:
    rows = await session.scalars(select(ApiKey).where(ApiKey.id.in_(list(ids))))
    return {row.id: row for row in rows}
