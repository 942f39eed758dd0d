"""Each process's cache of API keys' principals, by the SHA-256 of the secret.

An authenticated request then costs no key query while the key is unchanged. Any change to
``api_key`` (a revocation, a rotation, a role or regions changed by hand) notifies the channel
``api_key`` through a trigger (migration 0015), and every process forgets all it kept; while a
process is not listening it asks the database on every request (services.kit.notified_cache).
Only live keys are kept: an unknown or revoked secret is looked up every time.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from services.domain.access.principal import Principal
from services.kit.notified_cache import NotifiedCache

CHANNEL = "api_key"  # the trigger api_key_notify's

PrincipalCache = NotifiedCache[str, Principal]


def principal_cache(engine: AsyncEngine) -> PrincipalCache:
    return NotifiedCache(engine, CHANNEL)
