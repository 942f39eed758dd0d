"""SQL for API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import ApiKey


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
