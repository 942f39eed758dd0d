"""FastAPI dependencies: the caller's principal and request context, and per-caller rate limits.

The key is looked up in a session of its own that is closed at once: the request's own session
takes a connection only when the endpoint needs one, so no connection is held while a client is
still sending its body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.access import service
from services.domain.access.principal import Context, Principal
from services.kit import ratelimit
from services.kit.errors import Unauthorized


async def authenticate(request: Request) -> Principal:
    """The principal of the request's ``Authorization: Bearer`` key; 401 without a live one."""
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
        principal = await service.principal_for(session, secret.strip())
    if principal is None:
        # A wrong key counts against the caller's address: guessing keys is rate limited.
        await _count_anonymous(request)
        raise Unauthorized("The API key is unknown or revoked.")
    runtime = request.app.state.runtime
    await ratelimit.check(
        runtime.queue, f"key:{principal.key_id}", runtime.settings.rate_limit_per_minute
    )
    request.state.principal = principal
    return principal


async def _count_anonymous(request: Request) -> None:
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
    await _count_anonymous(request)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal)]
RequestContext = Annotated[Context, Depends(current_context)]
