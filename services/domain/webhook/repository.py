"""SQL for webhook subscriptions and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import WebhookDelivery, WebhookSubscription


async def active_subscriptions(session: AsyncSession, event: str) -> Sequence[WebhookSubscription]:
    return (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.active.is_(True), WebhookSubscription.events.any_() == event
            )
        )
    ).all()


async def add_deliveries(session: AsyncSession, deliveries: Sequence[WebhookDelivery]) -> None:
    session.add_all(deliveries)
    await session.flush()


async def lock_delivery(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id, with_for_update=True)


async def subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, subscription_id)


async def add_subscription(
    session: AsyncSession, subscription: WebhookSubscription
) -> WebhookSubscription:
    session.add(subscription)
    await session.flush()
    await session.refresh(subscription)
    return subscription


async def subscriptions(session: AsyncSession) -> Sequence[WebhookSubscription]:
    return (
        await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.created_at))
    ).all()


async def deliveries(
    session: AsyncSession, subscription_id: uuid.UUID, limit: int
) -> Sequence[WebhookDelivery]:
    """A subscription's deliveries, newest first."""
    return (
        await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    ).all()


async def overdue_deliveries(session: AsyncSession, before: datetime, limit: int) -> list[int]:
    """Pending deliveries whose next attempt was due before ``before``."""
    return list(
        (
            await session.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at < before
                )
                .limit(limit)
            )
        ).all()
    )
