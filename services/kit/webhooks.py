"""Webhooks for ministry systems, signed in the style of the Standard Webhooks spec.

An event is written as one delivery row per matching subscription, in the transaction of the
change that caused it (so it is never lost and never sent for a change that rolled back), and
enqueued after commit. The worker POSTs it with headers ``webhook-id``, ``webhook-timestamp``
and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, retrying with
exponential backoff; every attempt's outcome is recorded on the delivery. A request never waits
for a receiver.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.kit.db import after_commit
from services.kit.queue import Queue
from services.models import WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

DELIVER_JOB = "deliver_webhook"
EVENTS = ("assessment.published", "result.changed", "evidence.requested")
MAX_ATTEMPTS = 8
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for a delivery."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body)
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


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
    subscriptions = (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.active.is_(True), WebhookSubscription.events.any_() == event
            )
        )
    ).all()
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
    session.add_all(deliveries)
    await session.flush()
    if queue is not None:
        ids = [delivery.id for delivery in deliveries]

        async def enqueue() -> None:
            for delivery_id in ids:
                await queue.enqueue(DELIVER_JOB, delivery_id, job_id=f"webhook:{delivery_id}:0")

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
        delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != "pending":
            return "skipped"  # already delivered (a repeated job) or given up
        subscription = await session.get(WebhookSubscription, delivery.subscription_id)
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
            job_id=f"webhook:{delivery_id}:{attempts}",
            _defer_until=retry_at,
        )
    return status


async def due_deliveries(session: AsyncSession, limit: int = 1000) -> list[int]:
    """Pending deliveries whose next attempt is overdue (their job was lost with Redis)."""
    grace = datetime.now(UTC) - timedelta(seconds=30)
    return list(
        (
            await session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at < grace)
                .limit(limit)
            )
        ).all()
    )
