"""SQL for webhook subscriptions and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import ApiKey, WebhookDelivery, WebhookSubscription


def _maker_not_revoked() -> ColumnElement[bool]:
    """The subscription's key is not revoked (none: made by an operator, or a legacy row)."""
    return or_(
        WebhookSubscription.created_by.is_(None),
        ~exists().where(
            ApiKey.id == WebhookSubscription.created_by, ApiKey.revoked_at.is_not(None)
        ),
    )


async def active_subscriptions(session: AsyncSession, event: str) -> Sequence[WebhookSubscription]:
    """Active subscriptions to ``event`` whose key, if any, is not revoked."""
    return (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.active.is_(True),
                WebhookSubscription.events.any_() == event,
                _maker_not_revoked(),
            )
        )
    ).all()


async def add_deliveries(session: AsyncSession, deliveries: Sequence[WebhookDelivery]) -> None:
    session.add_all(deliveries)
    await session.flush()


def _claimable(delivery_id: int, now: datetime) -> ColumnElement[bool]:
    """Pending, and no attempt in progress (no lease, or one that ran out)."""
    return and_(
        WebhookDelivery.id == delivery_id,
        WebhookDelivery.status == "pending",
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    )


def _subscription_active() -> ColumnElement[bool]:
    """The delivery's subscription exists, is active and its key is not revoked."""
    return exists().where(
        WebhookSubscription.id == WebhookDelivery.subscription_id,
        WebhookSubscription.active.is_(True),
        _maker_not_revoked(),
    )


async def claim_delivery(
    session: AsyncSession, delivery_id: int, now: datetime, lease: datetime, *, max_attempts: int
) -> WebhookDelivery | None:
    """Take the next attempt of a claimable delivery of an active subscription with fewer than
    ``max_attempts`` attempts made, in one statement: attempts + 1, leased (and not due for
    the sweeper) until ``lease``."""
    claimed: WebhookDelivery | None = await session.scalar(
        update(WebhookDelivery)
        .where(
            _claimable(delivery_id, now),
            WebhookDelivery.attempts < max_attempts,
            _subscription_active(),
        )
        .values(attempts=WebhookDelivery.attempts + 1, claimed_until=lease, next_attempt_at=lease)
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False)
    )
    return claimed


async def cancel_orphan(session: AsyncSession, delivery_id: int, now: datetime) -> bool:
    """Cancel a claimable delivery whose subscription is gone or stopped."""
    cancelled = await session.scalar(
        update(WebhookDelivery)
        .where(_claimable(delivery_id, now), ~_subscription_active())
        .values(status="cancelled", claimed_until=None)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return cancelled is not None


async def give_up_exhausted(
    session: AsyncSession, delivery_id: int, now: datetime, *, max_attempts: int
) -> bool:
    """Mark failed a claimable delivery that has had ``max_attempts`` attempts already."""
    failed = await session.scalar(
        update(WebhookDelivery)
        .where(_claimable(delivery_id, now), WebhookDelivery.attempts >= max_attempts)
        .values(status="failed", claimed_until=None)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return failed is not None


async def finish_delivery(
    session: AsyncSession,
    delivery_id: int,
    attempts: int,
    lease: datetime,
    *,
    status: str,
    status_code: int | None,
    error: str | None,
    delivered_at: datetime | None,
    next_attempt_at: datetime | None,
) -> bool:
    """Record an attempt's outcome, only if its claim still holds (compare-and-set on attempts
    and lease); False when another attempt took over."""
    values: dict[str, object] = {
        "status": status,
        "last_status_code": status_code,
        "last_error": error,
        "delivered_at": delivered_at,
        "claimed_until": None,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    recorded = await session.scalar(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.attempts == attempts,
            WebhookDelivery.claimed_until == lease,
        )
        .values(values)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return recorded is not None


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


async def subscriptions(
    session: AsyncSession, *, created_by: uuid.UUID | None = None
) -> Sequence[WebhookSubscription]:
    """Every subscription, or those made by the key ``created_by``, oldest first."""
    query = select(WebhookSubscription).order_by(WebhookSubscription.created_at)
    if created_by is not None:
        query = query.where(WebhookSubscription.created_by == created_by)
    return (await session.scalars(query)).all()


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
