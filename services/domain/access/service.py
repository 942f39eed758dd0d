"""API keys for machine clients: ``Authorization: Bearer <key>``, stored as SHA-256 only.

Keys are 256-bit random secrets, so a plain SHA-256 is the right hash (no password stretching
needed) and makes the lookup one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import repository
from services.domain.access.principal import Principal
from services.models import ApiKey, Role

KEY_PREFIX = "cerdas_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession, *, name: str, role: Role, regions: list[str]
) -> tuple[ApiKey, str]:
    """A new key; the secret is returned once and never stored."""
    secret = new_secret()
    key = ApiKey(
        name=name,
        role=role,
        regions=sorted(set(regions)),
        secret_hash=hash_secret(secret),
        prefix=secret[: len(KEY_PREFIX) + 6],
    )
    return await repository.add(session, key), secret


async def principal_for(session: AsyncSession, secret: str) -> Principal | None:
    """The principal of a live key with this secret; None for an unknown or revoked one."""
    key = await repository.by_secret_hash(session, hash_secret(secret))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key.id, key.name, key.role, frozenset(key.regions))
