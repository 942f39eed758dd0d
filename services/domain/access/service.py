"""API keys for machine clients: ``Authorization: Bearer <key>``, stored as SHA-256 only.

Keys are 256-bit random secrets, so a plain SHA-256 is the right hash (no password stretching
needed) and makes the lookup one indexed equality.

Every request looks its key up afresh (nothing caches a principal beyond its request), so a
revoked or rotated-away secret is refused from the next request on. Issuing, revoking and
rotating are audited (entity ``api_key``); the audit rows name the key's prefix, never its
secret or hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import repository
from services.domain.access.policy import REGIONAL
from services.domain.access.principal import Context, Principal
from services.domain.audit import service as audit
from services.domain.region import repository as regions_repository
from services.kit.errors import Conflict, NotFound, invalid
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
        prefix=prefix_of(secret),
    )
    return await repository.add(session, key), secret


def prefix_of(secret: str) -> str:
    """What is kept of the secret in clear, to tell keys apart: ``cerdas_`` and six more."""
    return secret[: len(KEY_PREFIX) + 6]


async def principal_for(session: AsyncSession, secret: str) -> Principal | None:
    """The principal of a live key with this secret; None for an unknown or revoked one."""
    key = await repository.by_secret_hash(session, hash_secret(secret))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(key.id, key.name, key.role, frozenset(key.regions))


def _description(key: ApiKey) -> dict[str, object]:
    return {"name": key.name, "role": key.role, "regions": list(key.regions), "prefix": key.prefix}


async def issue_key(
    session: AsyncSession, context: Context, *, name: str, role: Role, regions: Sequence[str]
) -> tuple[ApiKey, str]:
    """A new key, checked and audited (``api_key.create``); the secret is returned once."""
    if not name.strip() or len(name) > 200:
        raise invalid("body", "/name", "bad length", "a key's name has 1 to 200 characters")
    if role in REGIONAL and not regions:
        raise invalid(
            "body", "/regions", "required", f"a {role} key needs the region(s) it acts for"
        )
    missing = sorted(set(regions) - await regions_repository.existing(session, list(regions)))
    if missing:
        raise invalid(
            "body",
            "/regions",
            "unknown region",
            f"unknown region {missing[0]!r} (a Kemendagri code, e.g. 32.71)",
        )
    key, secret = await create_key(session, name=name, role=role, regions=list(regions))
    audit.record(
        session,
        context,
        action="api_key.create",
        entity="api_key",
        entity_id=str(key.id),
        after=_description(key),
    )
    return key, secret


async def keys(
    session: AsyncSession,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    revoked: bool | None = None,
    limit: int | None = None,
) -> Sequence[ApiKey]:
    """Keys, newest first (see :func:`repository.page`)."""
    return await repository.page(session, before=before, revoked=revoked, limit=limit)


async def _locked(session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
    key = await repository.lock(session, key_id)
    if key is None:
        raise NotFound(f"No API key {key_id}.")
    return key


async def revoke_key(session: AsyncSession, context: Context, key_id: uuid.UUID) -> ApiKey:
    """Revoke the key: its secret is refused from the next request on. Revoking a revoked key
    changes nothing (and audits nothing): the answer is the key as it stands."""
    key = await _locked(session, key_id)
    if key.revoked_at is not None:
        return key
    key.revoked_at = datetime.now(UTC)
    await session.flush()
    audit.record(
        session,
        context,
        action="api_key.revoke",
        entity="api_key",
        entity_id=str(key.id),
        before={"revoked_at": None},
        after={"revoked_at": key.revoked_at.isoformat()},
    )
    return key


async def rotate_key(
    session: AsyncSession, context: Context, key_id: uuid.UUID
) -> tuple[ApiKey, str]:
    """A new secret for the same key (same id, name, role and regions); the old secret is
    refused from the next request on. A revoked key is not rotated (409): create a new one."""
    key = await _locked(session, key_id)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked; create a new key instead of rotating it.")
    secret = new_secret()
    before = key.prefix
    key.secret_hash = hash_secret(secret)
    key.prefix = prefix_of(secret)
    await session.flush()
    audit.record(
        session,
        context,
        action="api_key.rotate",
        entity="api_key",
        entity_id=str(key.id),
        before={"prefix": before},
        after={"prefix": key.prefix},
    )
    return key, secret
