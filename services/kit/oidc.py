"""OpenID Connect bearer tokens: verify a JWT access token against its issuer's published keys.

Cerdas is a resource server: it never sees a password, it checks tokens that an OpenID Provider
(a government SSO, usually Keycloak) signed. What is checked, in order: the token is a JWS whose
``alg`` is on the issuer's allow-list (public-key algorithms only: never ``none``, never HS*); its
``iss`` names a configured issuer; the signature verifies with the key its ``kid`` names in the
issuer's JWKS; ``aud`` holds the configured audience; ``exp``, ``nbf`` and ``iat`` hold within the
leeway. What the claims mean for Cerdas (role, regions) is decided in services.domain.access.

Keys: the JWKS URL is discovered from ``<issuer>/.well-known/openid-configuration`` and the key
set is cached. A token signed with a ``kid`` that is not in the cache refetches the set (the
provider rotated its keys), at most once per cool-down per issuer, so a stream of forged kids
cannot turn the server into a JWKS-fetching amplifier. A cached set is also refreshed after
:data:`JWKS_MAX_AGE_SECONDS`, so a key the provider withdrew stops verifying.

PyJWT does the JOSE work: a maintained library (used by the redis client Cerdas already
depends on), whose decoder refuses an algorithm outside the list it is given and binds each JWK
to its key type, with the ``cryptography`` package Cerdas already ships for the signatures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from services.kit.settings import OidcIssuer

log = logging.getLogger(__name__)

JWKS_MAX_AGE_SECONDS = 3600.0
_FETCH_TIMEOUT_SECONDS = 5.0


class InvalidToken(Exception):
    """The token is not one Cerdas accepts; the message says why (safe to show the caller)."""


def looks_like_jwt(token: str) -> bool:
    """A compact JWS has three dot-separated parts (API keys have none: ``cerdas_…``)."""
    return token.count(".") == 2


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and registered claims checked out, and its issuer's settings."""

    issuer: OidcIssuer
    claims: dict[str, Any]


@dataclass
class _KeyCache:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid → JWK
    fetched_at: float | None = None  # monotonic; None: never fetched
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TokenVerifier:
    """Verifies bearer JWTs for the configured issuers; one per app, its key caches shared by
    the app's requests."""

    def __init__(
        self,
        issuers: tuple[OidcIssuer, ...],
        *,
        leeway_seconds: int = 30,
        cooldown_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuers = {issuer.issuer: issuer for issuer in issuers}
        self.leeway_seconds = leeway_seconds
        self.cooldown_seconds = cooldown_seconds
        self.jwks_fetches = 0  # how many times a key set was fetched (tests, logs)
        self._transport = transport
        self._caches = {name: _KeyCache() for name in self.issuers}

    @property
    def enabled(self) -> bool:
        return bool(self.issuers)

    async def verify(self, token: str) -> VerifiedToken:
        """The verified token, or :class:`InvalidToken` saying what was wrong."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a well-formed JWT ({exc})") from None
        issuer_name = unverified.get("iss")
        issuer = self.issuers.get(issuer_name) if isinstance(issuer_name, str) else None
        if issuer is None:
            raise InvalidToken(f"the issuer {issuer_name!r} is not trusted")
        algorithm = header.get("alg")
        if algorithm not in issuer.algorithms:
            raise InvalidToken(
                f"the algorithm {algorithm!r} is not accepted "
                f"(accepted: {', '.join(issuer.algorithms)})"
            )
        key = await self._key(issuer, header.get("kid"), algorithm)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(
                f"the token is not for this API (audience {issuer.audience!r})"
            ) from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token does not verify ({exc})") from None
        return VerifiedToken(issuer, claims)

    async def _key(self, issuer: OidcIssuer, kid: object, algorithm: str) -> PyJWK:
        cache = self._caches[issuer.issuer]
        jwk = None if self._stale(cache) else self._pick(cache, kid)
        if jwk is None:
            async with cache.lock:
                # Another request may have refetched while this one waited.
                jwk = None if self._stale(cache) else self._pick(cache, kid)
                if jwk is None and self._may_fetch(cache):
                    await self._refresh(issuer, cache)
                    jwk = self._pick(cache, kid)
        if jwk is None:
            raise InvalidToken(f"no key {kid!r} in the issuer's key set")
        # A key that names its algorithm is used for that one only.
        if jwk.get("alg", algorithm) != algorithm:
            raise InvalidToken(f"the key {kid!r} is for {jwk['alg']}, not {algorithm}")
        try:
            # Binds the key to the algorithm: an RSA key is never taken as an EC or HMAC one.
            return PyJWK(jwk, algorithm)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the key {kid!r} cannot verify {algorithm} ({exc})") from None

    @staticmethod
    def _stale(cache: _KeyCache) -> bool:
        return (
            cache.fetched_at is None or time.monotonic() - cache.fetched_at > JWKS_MAX_AGE_SECONDS
        )

    def _may_fetch(self, cache: _KeyCache) -> bool:
        return (
            self._stale(cache)
            or time.monotonic() - (cache.fetched_at or 0) >= self.cooldown_seconds
        )

    @staticmethod
    def _pick(cache: _KeyCache, kid: object) -> dict[str, Any] | None:
        if isinstance(kid, str):
            return cache.keys.get(kid)
        # No kid: acceptable only when the set has a single key to choose.
        return next(iter(cache.keys.values())) if len(cache.keys) == 1 else None

    async def _refresh(self, issuer: OidcIssuer, cache: _KeyCache) -> None:
        """Fetch the issuer's key set (via discovery); on failure keep the old one."""
        self.jwks_fetches += 1
        cache.fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=_FETCH_TIMEOUT_SECONDS, trust_env=False
            ) as client:
                discovery_url = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
                discovery = (await client.get(discovery_url)).raise_for_status().json()
                if discovery.get("issuer") != issuer.issuer:
                    raise ValueError(f"discovery names issuer {discovery.get('issuer')!r}")
                jwks = (await client.get(discovery["jwks_uri"])).raise_for_status().json()
            keys = {
                key["kid"]: key
                for key in jwks["keys"]
                if isinstance(key, dict)
                and isinstance(key.get("kid"), str)
                and key.get("use", "sig") == "sig"
            }
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("could not fetch the key set of %s: %s", issuer.issuer, exc)
            return
        cache.keys = keys
        log.info("fetched the key set of %s: %s", issuer.issuer, sorted(cache.keys))
