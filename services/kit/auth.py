"""API keys for machine clients: ``Authorization: Bearer <key>``, stored as SHA-256 only.

Keys are 256-bit random secrets, so a plain SHA-256 is the right hash (no password stretching
needed) and makes the lookup one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.kit import ratelimit
from services.kit.errors import Forbidden, Unauthorized
from services.models import ApiKey

KEY_PREFIX = "cerdas_"
NATIONAL_ROLES = frozenset({"ministry-admin"})
REGIONAL_ROLES = frozenset({"super-app", "region-operator"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name, role and the regions it is bound to."""

    key_id: uuid.UUID | None
    name: str
    role: str
    regions: frozenset[str] = field(default_factory=frozenset)

    def may_write_region(self, region_code: str) -> bool:
        if self.role in NATIONAL_ROLES:
            return True
        return self.role in REGIONAL_ROLES and region_code in self.regions

    @property
    def audit_id(self) -> str:
        return str(self.key_id) if self.key_id else self.name


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession, *, name: str, role: str, regions: list[str]
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
    session.add(key)
    await session.flush()
    return key, secret


async def authenticate(request: Request) -> Principal:
    """The key's principal, looked up in a session of its own that is closed at once: the
    request's own session takes a connection only when the endpoint needs one, so no connection
    is held while a client is still sending its body."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # already authenticated (and counted) for this request
        return known
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        await _count_anonymous(request)
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        key = await session.scalar(
            select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret.strip()))
        )
    if key is None or key.revoked_at is not None:
        # A wrong key counts against the caller's address: guessing keys is rate limited.
        await _count_anonymous(request)
        raise Unauthorized("The API key is unknown or revoked.")
    principal = Principal(key.id, key.name, key.role, frozenset(key.regions))
    runtime = request.app.state.runtime
    await ratelimit.check(runtime.queue, f"key:{key.id}", runtime.settings.rate_limit_per_minute)
    request.state.principal = principal
    return principal


async def _count_anonymous(request: Request) -> None:
    runtime = request.app.state.runtime
    address = request.client.host if request.client else "unknown"
    await ratelimit.check(
        runtime.queue, f"anon:{address}", runtime.settings.anonymous_rate_limit_per_minute
    )


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def optional_principal(request: Request) -> Principal | None:
    """The caller, or None for an anonymous read; a bad key is still a 401."""
    if "authorization" not in request.headers:
        return None
    return await authenticate(request)


async def limit_anonymous(request: Request) -> None:
    """Every request is counted once: by its key when it sends a valid one (a wrong key is 401
    on every route and counts against the address), otherwise by client address. Mounted on
    every router but health's."""
    if "authorization" in request.headers:
        await authenticate(request)
        return
    await _count_anonymous(request)


MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(
            f"The role {principal.role!r} may not do this (allowed: {', '.join(roles)})."
        )
