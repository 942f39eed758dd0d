"""Webhook subscriptions for ministry systems, and the record of every delivery."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.api.webhook.schemas import (
    DeliveryOut,
    NewSubscriptionOut,
    SubscriptionIn,
    SubscriptionOut,
)
from services.domain.access import policy
from services.domain.access.dependencies import CurrentPrincipal, RequestContext
from services.domain.access.policy import Action
from services.domain.webhook import service
from services.kit.db import DbSession
from services.kit.idempotency import remember_answer, replayed

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=201,
    response_model=NewSubscriptionOut,
    summary="Subscribe an endpoint to events",
)
async def subscribe(
    body: SubscriptionIn, request: Request, session: DbSession, context: RequestContext
) -> NewSubscriptionOut | JSONResponse:
    """Events: assessment.published, result.changed, evidence.requested. The answer holds the
    signing secret, shown only this once; verify deliveries with it (Standard Webhooks)."""
    policy.require(context.principal, Action.MANAGE_WEBHOOKS)
    if (replay := await replayed(session, request, context.principal)) is not None:
        return replay
    subscription = await service.subscribe(session, context, str(body.url), body.events)
    answer = NewSubscriptionOut.model_validate(subscription)
    remember_answer(session, request, context.principal, 201, answer)
    return answer


@router.get("", response_model=list[SubscriptionOut], summary="Subscriptions")
async def subscriptions(session: DbSession, principal: CurrentPrincipal) -> list[SubscriptionOut]:
    policy.require(principal, Action.MANAGE_WEBHOOKS)
    return [SubscriptionOut.model_validate(row) for row in await service.subscriptions(session)]


@router.delete("/{subscription_id}", status_code=204, summary="Stop a subscription")
async def unsubscribe(
    subscription_id: uuid.UUID, session: DbSession, context: RequestContext
) -> Response:
    policy.require(context.principal, Action.MANAGE_WEBHOOKS)
    await service.unsubscribe(session, context, subscription_id)
    return Response(status_code=204)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=list[DeliveryOut],
    summary="Deliveries and their outcomes",
)
async def deliveries(
    subscription_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> list[DeliveryOut]:
    policy.require(principal, Action.MANAGE_WEBHOOKS)
    rows = await service.deliveries(session, subscription_id)
    return [DeliveryOut.model_validate(row) for row in rows]
