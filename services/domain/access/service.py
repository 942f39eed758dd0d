"""Who calls: API keys for machine clients and people signed in with their organisation's SSO.

People send an OpenID Connect access token (a JWT) as ``Authorization: Bearer``; once
services.kit.oidc has verified it, :func:`person_principal` maps its claims to a Cerdas role
and regions by the issuer's configured mapping, and records the person (``person``: issuer,
sub, name, NIP) so that assignments, evidence requests and the audit trail can name them.

Machine clients send API keys, stored as SHA-256 only.

Keys are 256-bit random secrets, so a plain SHA-256 is the right hash (no password stretching
needed) and makes the lookup one indexed equality.

A revoked or rotated-away secret is refused from the next request on: each process keeps the
principals of live keys (services.domain.access.cache), and forgets them all when any key
changes (a trigger notifies every process after the commit), or asks the database on every
request while it cannot hear those notifications. Issuing, revoking and
rotating are audited (entity ``api_key``); the audit rows name the key's prefix, never its
secret or hash.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import repository
from services.domain.access.policy import REGIONAL
from services.domain.access.principal import Context, PersonIdentity, Principal
from services.domain.audit import service as audit
from services.domain.region import repository as regions_repository
from services.kit.errors import Conflict, Forbidden, NotFound, invalid
from services.kit.oidc import VerifiedToken
from services.kit.settings import OidcIssuer
from services.models import ApiKey, Person, Role

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


def claim(claims: dict[str, Any], path: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``), or None."""
    found: Any = claims
    for part in path.split("."):
        if not isinstance(found, dict):
            return None
        found = found.get(part)
    return found


def _strings(value: Any) -> list[str]:
    """A claim holding one string or a list of them (space-separated strings are split, as
    OAuth scopes are), as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def role_of(issuer: OidcIssuer, claims: dict[str, Any]) -> tuple[Role, frozenset[str]]:
    """The Cerdas role and regions a token's claims map to; 403 naming the claim when they map
    to no role, or to a regional role without regions."""
    held = set(_strings(claim(claims, issuer.roles_claim)))
    role = next((role for name, role in issuer.role_map.items() if name in held), None)
    if role is None:
        raise Forbidden(
            f"Your sign-in is valid, but its {issuer.roles_claim!r} claim holds no role that "
            f"Cerdas knows ({', '.join(issuer.role_map)}); ask your SSO administrator for one.",
            code="no-role",
        )
    regions = frozenset(_strings(claim(claims, issuer.regions_claim)))
    if role in REGIONAL and not regions:
        raise Forbidden(
            f"Your sign-in maps to the role {role}, which acts for regions, but its "
            f"{issuer.regions_claim!r} claim names no Kemendagri region code.",
            code="no-region",
        )
    return role, regions if role in REGIONAL else frozenset()


def _text(value: Any, limit: int) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None


async def person_principal(session: AsyncSession, token: VerifiedToken) -> Principal:
    """The principal of a person's verified token: role and regions from its claims (403 when
    they map to none), the person recorded or refreshed (name, NIP) in ``person``. The caller
    commits."""
    issuer, claims = token.issuer, token.claims
    role, regions = role_of(issuer, claims)
    subject = str(claims["sub"])
    name = _text(claim(claims, issuer.name_claim), 200)
    nip = _text(claim(claims, issuer.nip_claim), 32)
    person = await repository.person_seen(
        session, issuer=issuer.issuer, subject=subject, name=name, nip=nip
    )
    identity = PersonIdentity(person.id, issuer.issuer, subject, nip)
    return Principal(None, name or subject, role, regions, person=identity)


async def person_for_assignment(
    session: AsyncSession, issuers: tuple[OidcIssuer, ...], subject: str, issuer: str | None
) -> Person:
    """The person ``subject`` of ``issuer`` (the only configured issuer when None), recorded
    now if they have never signed in: a ministry-admin may assign someone before their first
    sign-in."""
    known = [config.issuer for config in issuers]
    if issuer is None:
        if len(known) != 1:
            message = (
                "no OpenID issuer is configured (CERDAS_OIDC_ISSUERS)"
                if not known
                else f"several issuers are trusted: name one of {', '.join(known)}"
            )
            raise invalid("body", "/issuer", "required", message)
        issuer = known[0]
    elif issuer not in known:
        raise invalid("body", "/issuer", "unknown issuer", f"{issuer!r} is not a trusted issuer")
    return await repository.person_named(session, issuer=issuer, subject=subject)


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
