"""Webhooks for ministry systems, signed in the style of the Standard Webhooks spec.

An event is written as one delivery row per matching subscription, in the transaction of the
change that caused it (so it is never lost and never sent for a change that rolled back), and
enqueued after commit. The worker POSTs it with headers ``webhook-id``, ``webhook-timestamp``
and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, retrying with
exponential backoff; every attempt's outcome is recorded on the delivery. A request never waits
for a receiver.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.access.principal import Context
from services.domain.audit import service as audit
from services.domain.webhook import repository
from services.domain.webhook.jobs import DELIVER_JOB, delivery_job_id
from services.domain.webhook.signing import new_secret, sign
from services.kit.db import after_commit
from services.kit.errors import NotFound, invalid
from services.kit.queue import Queue
from services.models import WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

EVENTS = ("assessment.published", "result.changed", "evidence.requested")
MAX_ATTEMPTS = 8


async def emit(session: AsyncSession, event: str, data: dict[str, Any], queue: Queue | None) -> int:
    """Record ``event`` for every active subscription to it; enqueue after commit."""
    return await emit_many(session, event, [data], queue)


async def emit_many(
    session: AsyncSession, event: str, items: list[dict[str, Any]], queue: Queue | None
) -> int:
    """Record one ``event`` per item of ``items`` (one subscription lookup for all)."""
    assert event in EVENTS, event
    if not items:
        return 0
    subscriptions = await repository.active_subscriptions(session, event)
    if not subscriptions:
        return 0
    deliveries = []
    for data in items:
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        deliveries += [
            WebhookDelivery(
                subscription_id=subscription.id,
                event_id=event_id,
                event=event,
                payload=payload,
                status="pending",
                attempts=0,
            )
            for subscription in subscriptions
        ]
    await repository.add_deliveries(session, deliveries)
    if queue is not None:
        ids = [delivery.id for delivery in deliveries]

        async def enqueue() -> None:
            for delivery_id in ids:
                await queue.enqueue(
                    DELIVER_JOB, delivery_id, job_id=delivery_job_id(delivery_id, 0)
                )

        after_commit(session, enqueue)
    return len(deliveries)


def backoff(attempt: int, base_seconds: float) -> timedelta:
    """Wait before attempt ``attempt + 1``: base, 5×, 25×, … capped at six hours."""
    return timedelta(seconds=min(base_seconds * 5 ** (attempt - 1), 6 * 3600))


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    queue: Queue | None,
    *,
    client: httpx.AsyncClient,
    backoff_seconds: float,
) -> str:
    """One attempt at a pending delivery; schedules the next attempt when it fails."""
    async with sessionmaker() as session, session.begin():
        delivery = await repository.lock_delivery(session, delivery_id)
        if delivery is None or delivery.status != "pending":
            return "skipped"  # already delivered (a repeated job) or given up
        subscription = await repository.subscription(session, delivery.subscription_id)
        if subscription is None or not subscription.active:
            delivery.status = "cancelled"
            return "cancelled"
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(subscription.secret, delivery.event_id, timestamp, body),
            "user-agent": "Cerdas-Webhooks/1",
        }
        delivery.attempts += 1
        try:
            response = await client.post(subscription.url, content=body, headers=headers)
            delivery.last_status_code = response.status_code
            delivery.last_error = None if response.is_success else response.text[:500]
            succeeded = response.is_success
        except httpx.HTTPError as exc:
            delivery.last_status_code = None
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            succeeded = False
        now = datetime.now(UTC)
        if succeeded:
            delivery.status, delivery.delivered_at = "succeeded", now
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts, backoff_seconds)
        status, attempts, retry_at = delivery.status, delivery.attempts, delivery.next_attempt_at
    if status == "pending" and queue is not None:
        await queue.enqueue(
            DELIVER_JOB,
            delivery_id,
            job_id=delivery_job_id(delivery_id, attempts),
            _defer_until=retry_at,
        )
    return status


async def due_deliveries(session: AsyncSession, limit: int = 1000) -> list[int]:
    """Pending deliveries whose next attempt is overdue (their job was lost with Redis)."""
    return await repository.overdue_deliveries(
        session, datetime.now(UTC) - timedelta(seconds=30), limit
    )


async def subscribe(
    session: AsyncSession, context: Context, url: str, events: list[str]
) -> WebhookSubscription:
    """A new subscription of ``url`` to ``events``, with its signing secret."""
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise invalid(
            "body",
            "/events",
            "unknown event",
            f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})",
        )
    subscription = await repository.add_subscription(
        session,
        WebhookSubscription(
            url=url,
            events=sorted(set(events)),
            secret=new_secret(),
            created_by=context.principal.key_id,
        ),
    )
    audit.record(
        session,
        context,
        action="webhook.subscribe",
        entity="webhook_subscription",
        entity_id=str(subscription.id),
        after={"url": subscription.url, "events": subscription.events},
    )
    return subscription


async def subscriptions(session: AsyncSession) -> Sequence[WebhookSubscription]:
    return await repository.subscriptions(session)


async def unsubscribe(session: AsyncSession, context: Context, subscription_id: uuid.UUID) -> None:
    subscription = await repository.subscription(session, subscription_id)
    if subscription is None:
        raise NotFound(f"No webhook subscription {subscription_id}.")
    subscription.active = False
    audit.record(
        session,
        context,
        action="webhook.unsubscribe",
        entity="webhook_subscription",
        entity_id=str(subscription.id),
        before={"active": True},
        after={"active": False},
    )


async def deliveries(
    session: AsyncSession, subscription_id: uuid.UUID, limit: int = 500
) -> Sequence[WebhookDelivery]:
    """A subscription's latest deliveries, newest first."""
    return await repository.deliveries(session, subscription_id, limit)
