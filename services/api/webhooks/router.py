"""Webhook subscriptions for ministry systems, and the record of every delivery."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AnyHttpUrl, BaseModel, Field, UrlConstraints
from sqlalchemy import select

from services.kit import audit
from services.kit.auth import CurrentPrincipal, require_role
from services.kit.db import DbSession
from services.kit.errors import NotFound, invalid
from services.kit.idempotency import remember_answer, replayed
from services.kit.webhooks import EVENTS, new_secret
from services.models import WebhookDelivery, WebhookSubscription

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


URL_MAX = 2000  # the column's width


def _fits(url: AnyHttpUrl) -> AnyHttpUrl:
    # The URL is stored as normalised (host punycoded, a path added), which can be longer than
    # what was sent: the stored form must fit.
    if len(str(url)) > URL_MAX:
        raise ValueError(f"URL should have at most {URL_MAX} characters once normalised")
    return url


class SubscriptionIn(BaseModel):
    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=URL_MAX), AfterValidator(_fits)] = Field(
        examples=["https://sistem.kementerian.go.id/hooks/cerdas"]
    )
    events: list[str] = Field(min_length=1, max_length=50, examples=[["assessment.published"]])


def _subscription(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "url": row.url,
        "events": row.events,
        "active": row.active,
        "created_at": row.created_at.isoformat(),
    }


@router.post("", status_code=201, response_model=None, summary="Subscribe an endpoint to events")
async def subscribe(
    body: SubscriptionIn, request: Request, session: DbSession, principal: CurrentPrincipal
) -> dict[str, Any] | JSONResponse:
    """Events: assessment.published, result.changed, evidence.requested. The answer holds the
    signing secret, shown only this once; verify deliveries with it (Standard Webhooks)."""
    require_role(principal, "ministry-admin")
    if (replay := await replayed(session, request, principal)) is not None:
        return replay
    unknown = sorted(set(body.events) - set(EVENTS))
    if unknown:
        raise invalid(
            "body",
            "/events",
            "unknown event",
            f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})",
        )
    subscription = WebhookSubscription(
        url=str(body.url),
        events=sorted(set(body.events)),
        secret=new_secret(),
        created_by=principal.key_id,
    )
    session.add(subscription)
    await session.flush()
    await session.refresh(subscription)
    audit.record(
        session,
        principal,
        action="webhook.subscribe",
        entity="webhook_subscription",
        entity_id=str(subscription.id),
        after={"url": subscription.url, "events": subscription.events},
        request_id=request.state.request_id,
    )
    answer = _subscription(subscription) | {"secret": subscription.secret}
    remember_answer(session, request, principal, 201, answer)
    return answer


@router.get("", summary="Subscriptions")
async def subscriptions(session: DbSession, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    require_role(principal, "ministry-admin")
    rows = await session.scalars(
        select(WebhookSubscription).order_by(WebhookSubscription.created_at)
    )
    return [_subscription(row) for row in rows]


@router.delete("/{subscription_id}", status_code=204, summary="Stop a subscription")
async def unsubscribe(
    subscription_id: uuid.UUID, request: Request, session: DbSession, principal: CurrentPrincipal
) -> Response:
    require_role(principal, "ministry-admin")
    subscription = await session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise NotFound(f"No webhook subscription {subscription_id}.")
    subscription.active = False
    audit.record(
        session,
        principal,
        action="webhook.unsubscribe",
        entity="webhook_subscription",
        entity_id=str(subscription.id),
        before={"active": True},
        after={"active": False},
        request_id=request.state.request_id,
    )
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", summary="Deliveries and their outcomes")
async def deliveries(
    subscription_id: uuid.UUID, session: DbSession, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    require_role(principal, "ministry-admin")
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(500)
    )
    return [
        {
            "id": row.id,
            "event_id": row.event_id,
            "event": row.event,
            "status": row.status,
            "attempts": row.attempts,
            "last_status_code": row.last_status_code,
            "last_error": row.last_error,
            "delivered_at": row.delivered_at,
            "next_attempt_at": row.next_attempt_at,
            "payload": row.payload,
        }
        for row in rows
    ]
