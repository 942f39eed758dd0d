"""API keys (ministry-admin) and the caller's own key: who am I, what am I assigned.

Keys are created and rotated by an operator with ``cerdas keys`` (the secret is printed there,
once); the API lists and revokes them and never shows a secret or its hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.api.key import service
from services.api.key.schemas import AssignmentPage, KeyOut, KeyPage, MeOut
from services.domain.access import policy
from services.domain.access import service as keys
from services.domain.access.cache import PrincipalCache
from services.domain.access.dependencies import CurrentPrincipal, RequestContext
from services.domain.access.policy import Action
from services.kit.db import DbSession, after_commit
from services.kit.idempotency import remember_answer, replayed

router = APIRouter(tags=["keys"])


@router.get("/v1/keys", response_model=KeyPage, summary="API keys, newest first")
async def list_keys(
    session: DbSession,
    principal: CurrentPrincipal,
    revoked: Annotated[
        bool | None, Query(description="true: only revoked keys; false: only live ones")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> KeyPage:
    """Every key with its role, regions, prefix and state; never a secret or its hash."""
    policy.require(principal, Action.MANAGE_KEYS)
    return await service.key_page(session, revoked=revoked, cursor=cursor, limit=limit)


def forget_keys(cache: PrincipalCache) -> Callable[[], Awaitable[None]]:
    async def forget() -> None:
        cache.forget_all()

    return forget


@router.post("/v1/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke an API key")
async def revoke_key(
    key_id: uuid.UUID, request: Request, session: DbSession, context: RequestContext
) -> KeyOut | JSONResponse:
    """The key's secret is refused (401) from the next request on. Revoking a revoked key
    answers the key as it stands (200, nothing changes). Revocation cannot be undone."""
    policy.require(context.principal, Action.MANAGE_KEYS)
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    answer = KeyOut.model_validate(await keys.revoke_key(session, context, key_id))
    remember_answer(session, request, context.principal, 200, answer)
    # Other processes hear of it from Postgres; this one forgets at once, before answering.
    cache: PrincipalCache = request.app.state.principal_cache
    after_commit(session, forget_keys(cache))
    return answer


@router.get("/v1/me", response_model=MeOut, summary="The key this request is made with")
async def me(principal: CurrentPrincipal) -> MeOut:
    return service.me(principal)


@router.get(
    "/v1/me/assignments",
    response_model=AssignmentPage,
    summary="The assessments assigned to this key or person",
)
async def my_assignments(session: DbSession, principal: CurrentPrincipal) -> AssignmentPage:
    """An assessor's assigned assessments (in any state), in the shape of ``GET
    /v1/assessments`` items, newest period first; no items for the other roles."""
    return AssignmentPage(items=await service.assignments(session, principal))
