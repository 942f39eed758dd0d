"""Webhook subscriptions for ministry systems, and the record of every delivery."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.api.webhook.schemas import (
    DeliveryOut,
    DeliveryPage,
    NewSubscriptionOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
)
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal, RequestContext
from services.domain.access.policy import Action
from services.domain.webhook import service
from services.kit.db import DbSession
from services.kit.errors import ProblemError
from services.kit.idempotency import remember_answer, replayed

REPLAYED = {"Idempotent-Replayed": "true"}

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=201,
    response_model=NewSubscriptionOut,
    summary="Subscribe an endpoint to events",
)
async def subscribe(
    body: SubscriptionIn,
    request: Request,
    response: Response,
    session: DbSession,
    context: RequestContext,
) -> NewSubscriptionOut | JSONResponse:
    """Events: assessment.published, result.changed, evidence.requested. The answer holds the
    signing secret, shown only this once; verify deliveries with it (Standard Webhooks). A
    regional key's subscription hears only events of its regions' assessments. The URL must
    be, and resolve to, a public address (422 otherwise)."""
    policy.require(context.principal, Action.MANAGE_WEBHOOKS)
    settings = request.app.state.runtime.settings
    # Checked before the first query: the target's DNS lookup may take seconds, which must
    # not hold a pooled connection, a transaction or the idempotency key's lock. A refusal is
    # raised only after the replay check, so that a replay still answers as the first time.
    refused: ProblemError | None = None
    try:
        await service.vet(context.principal, str(body.url), body.events, settings)
    except ProblemError as exc:
        refused = exc
    if (replay := await replayed(session, request, context.principal)) is not None:
        # The stored answer holds the secret sealed, as the subscription does.
        first = json.loads(bytes(replay.body))
        if isinstance(first, dict) and isinstance(first.get("secret"), str):
            first["secret"] = service.open_secret(settings, first["secret"])
        headers = {**REPLAYED, "Location": f"/v1/webhooks/{first['id']}"}
        return JSONResponse(first, status_code=replay.status_code, headers=headers)
    if refused is not None:
        raise refused
    subscription, secret = await service.subscribe(
        session, context, str(body.url), body.events, settings, vetted=True
    )
    answer = NewSubscriptionOut.model_validate(
        {**SubscriptionOut.model_validate(subscription).model_dump(), "secret": secret}
    )
    stored = answer.model_copy(update={"secret": service.seal_secret(settings, secret)})
    remember_answer(session, request, context.principal, 201, stored)
    response.headers["Location"] = f"/v1/webhooks/{subscription.id}"
    return answer


@router.get("", response_model=SubscriptionPage, summary="Subscriptions")
async def subscriptions(session: DbSession, principal: CurrentPrincipal) -> SubscriptionPage:
    """Every subscription for a ministry-admin; a regional key's own for a regional key."""
    policy.require(principal, Action.MANAGE_WEBHOOKS)
    rows = await service.subscriptions(session, principal)
    return SubscriptionPage(items=[SubscriptionOut.model_validate(row) for row in rows])


@router.delete("/{subscription_id}", status_code=204, summary="Stop a subscription")
async def unsubscribe(
    subscription_id: uuid.UUID, session: DbSession, context: RequestContext
) -> Response:
    policy.require(context.principal, Action.MANAGE_WEBHOOKS)
    await service.unsubscribe(session, context, subscription_id)
    return Response(status_code=204)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    summary="Deliveries and their outcomes",
)
async def deliveries(
    subscription_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> DeliveryPage:
    policy.require(principal, Action.MANAGE_WEBHOOKS)
    rows = await service.deliveries(session, principal, subscription_id)
    return DeliveryPage(items=[DeliveryOut.model_validate(row) for row in rows])
