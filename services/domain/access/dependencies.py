"""FastAPI dependencies: the caller's principal and request context, and per-caller rate limits.

``Authorization: Bearer`` carries an API key (``cerdas_…``) or a person's OpenID Connect access
token (a JWT: three dot-separated parts), verified against the trusted issuers
(services.kit.oidc) and mapped to a role (services.domain.access.service). Either way the same
:class:`Principal` comes out, and the same policy decides what it may do.

The key (or the person) is looked up in a session of its own that is closed at once: the
request's own session takes a connection only when the endpoint needs one, so no connection is
held while a client is still sending its body. A live key's principal is kept by the process
(services.domain.access.cache) until any key changes, so a known key usually costs no query.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.access import service
from services.domain.access.cache import PrincipalCache
from services.domain.access.principal import Context, Principal
from services.kit import ratelimit
from services.kit.errors import Unauthorized
from services.kit.oidc import InvalidToken, TokenVerifier, looks_like_jwt


def invalid_token(reason: str, detail: str | None = None) -> Unauthorized:
    """401 for a bearer token that was sent but is not accepted (RFC 6750's invalid_token)."""
    description = reason.replace("\\", "").replace('"', "'")
    return Unauthorized(
        detail or f"The bearer token is not accepted: {reason}.",
        code="invalid-token",
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'
        },
    )


async def authenticate(request: Request) -> Principal:
    """The principal of the request's ``Authorization: Bearer`` key; 401 without a live one."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # already authenticated (and counted) for this request
        return known
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        await count_anonymous(request)
        raise Unauthorized(
            "Send an API key or a sign-in (OpenID Connect) access token as "
            "'Authorization: Bearer <token>'."
        )
    token = secret.strip()
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    principal: Principal | None
    if looks_like_jwt(token):
        principal = await _person(request, sessionmaker, token)
    else:
        principal = await _key_principal(request, sessionmaker, token)
        if principal is None:
            # A wrong key counts against the caller's address: guessing keys is rate limited.
            await count_anonymous(request)
            raise invalid_token(
                "the API key is unknown or revoked", "The API key is unknown or revoked."
            )
    runtime = request.app.state.runtime
    await ratelimit.check(
        runtime.queue, f"key:{principal.audit_id}", runtime.settings.rate_limit_per_minute
    )
    request.state.principal = principal
    return principal


async def _key_principal(
    request: Request, sessionmaker: async_sessionmaker[AsyncSession], secret: str
) -> Principal | None:
    """The principal of a live key: from the process's cache while it is trusted, else looked
    up (and kept, unless the key changed meanwhile)."""
    cache: PrincipalCache | None = getattr(request.app.state, "principal_cache", None)
    hashed = service.hash_secret(secret)
    if cache is not None and (known := cache.get(hashed)) is not None:
        return known
    generation = cache.generation if cache is not None else None
    async with sessionmaker() as session:
        principal = await service.principal_for(session, secret)
    if cache is not None and principal is not None:
        cache.put(hashed, principal, generation)
    return principal


async def _person(
    request: Request, sessionmaker: async_sessionmaker[AsyncSession], token: str
) -> Principal:
    """The person signed in with ``token``: 401 for a token that does not verify, 403 for one
    whose claims map to no role."""
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        if not verifier.enabled:
            raise InvalidToken("this server trusts no OpenID issuer (API keys only)")
        verified = await verifier.verify(token)
    except InvalidToken as exc:
        await count_anonymous(request)
        raise invalid_token(str(exc)) from None
    async with sessionmaker() as session:
        principal = await service.person_principal(session, verified)
        await session.commit()
    return principal


async def count_anonymous(request: Request) -> None:
    """Count the request against its client address's limit, once: a request already counted
    (before routing, services.kit.results_cache.CachedHits) is not counted again."""
    if getattr(request.state, "anonymous_counted", False):
        return
    request.state.anonymous_counted = True
    runtime = request.app.state.runtime
    address = request.client.host if request.client else "unknown"
    await ratelimit.check(
        runtime.queue, f"anon:{address}", runtime.settings.anonymous_rate_limit_per_minute
    )


async def optional_principal(request: Request) -> Principal | None:
    """The caller, or None for an anonymous read; a bad key is still a 401."""
    if "authorization" not in request.headers:
        return None
    return await authenticate(request)


async def current_context(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Context:
    """The authenticated caller and the request id its writes are audited under."""
    return Context(principal, request.state.request_id)


async def limit_anonymous(request: Request) -> None:
    """Every request is counted once: by its key when it sends a valid one (a wrong key is 401
    on every route and counts against the address), otherwise by client address. Mounted on
    every router but health's."""
    if "authorization" in request.headers:
        await authenticate(request)
        return
    await count_anonymous(request)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
RequestContext = Annotated[Context, Depends(current_context)]
