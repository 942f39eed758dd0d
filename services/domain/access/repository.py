"""SQL for API keys."""

from __future__ import annotations

import uuid

from sqlalchemy import select
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
