"""Webhooks for ministry systems and regions, signed in the style of the Standard Webhooks spec.

An event is written as one delivery row per matching subscription, in the transaction of the
change that caused it (so it is never lost and never sent for a change that rolled back), and
enqueued after commit. The worker POSTs it with headers ``webhook-id``, ``webhook-timestamp``
and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, retrying with
exponential backoff; every attempt's outcome (status code, or a short error class, never the
receiver's answer) is recorded on the delivery. A request never waits for a receiver, and no
database transaction is open while a receiver is called.

Scope: a subscription belongs to the key that made it. One made by a ministry-admin hears every
event; one made by a regional key (super-app, region-operator) hears only events of assessments
of the regions that key acts for, whatever the event (``assessment.published`` included: a
published assessment is public, but the subscription asked for its own regions). A regional key
lists, stops and reads the deliveries of its own subscriptions only; others are 404 to it.

A subscription made by a key that has since been revoked hears nothing more: no delivery is
recorded for it, and its pending deliveries are cancelled when next claimed (one made by an
operator, ``created_by`` NULL, is not affected).

Targets: only public addresses (see :mod:`services.domain.webhook.targets`), checked when
subscribing (before the request touches the database: the lookup may take seconds) and again,
after DNS resolution, before every attempt, which connects to the address checked. Each
attempt uses a connection of its own (``Connection: close``): a pooled TLS connection opened
for one name pinned to an address must never carry a request for another name pinned to the
same address, whose certificate would then go unchecked. Secrets are encrypted at rest (see
:mod:`services.domain.webhook.vault`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.access import policy
from services.domain.access.principal import Context, Principal, Visibility
from services.domain.audit import service as audit
from services.domain.webhook import repository, targets, vault
from services.domain.webhook.jobs import DELIVER_JOB, delivery_job_id
from services.domain.webhook.signing import new_secret, sign
from services.kit.db import after_commit
from services.kit.errors import Forbidden, NotFound, Unprocessable, invalid
from services.kit.metrics import WEBHOOK_DELIVERIES
from services.kit.queue import Queue
from services.kit.settings import Settings
from services.models import Assessment, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

EVENTS = ("assessment.published", "result.changed", "evidence.requested")
MAX_ATTEMPTS = 8
BLOCKED = "blocked: private address"


def scope_of(subscription: WebhookSubscription) -> Visibility:
    """What the subscription's owner may see, as the policy's visibility: everything, or the
    assessments of its regions (``regions`` NULL: a national subscription)."""
    if subscription.regions is None:
        return Visibility(everything=True)
    return Visibility(regions=frozenset(subscription.regions))


def hears(scope: Visibility, data: dict[str, Any]) -> bool:
    """Whether a subscriber of ``scope`` may get an event about ``data``'s assessment. An
    internal assessment's events (an agency's evaluation inside its region) go to that
    region's own subscriptions only, never to a national one (the ministry's systems)."""
    region = data.get("region")
    if scope.everything and not data.get("internal"):
        return True
    return isinstance(region, str) and region in scope.regions


def internal_marker(assessment: Assessment) -> dict[str, Any]:
    """What an event about an internal assessment adds to its data (nothing for an official
    one): ``internal`` true and the agency, so only the region's subscribers hear it."""
    if assessment.agency_id is None:
        return {}
    return {"internal": True, "agency_id": str(assessment.agency_id)}


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
    scopes = [(subscription, scope_of(subscription)) for subscription in subscriptions]
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
            for subscription, scope in scopes
            if hears(scope, data)
        ]
    if not deliveries:
        return 0
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


def _error_class(exc: httpx.HTTPError) -> str:
    """A short, fixed description of a failed request (never the receiver's words)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, ssl.SSLCertVerificationError):
                return "tls: certificate not valid for the host"
            cause = cause.__cause__ or cause.__context__
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol error"
    if isinstance(exc, httpx.TooManyRedirects):
        return "redirect"
    return "request failed"


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, settings: Settings
) -> tuple[int | None, str | None]:
    """POST ``body`` to ``url`` at an address checked just now: (status code, error class)."""
    target_url = httpx.URL(url)
    try:
        target = await targets.check(
            target_url.host,
            target_url.port or (443 if target_url.scheme == "https" else 80),
            allow_private=settings.webhook_allow_private_targets,
        )
    except targets.TargetRefused:
        return None, BLOCKED
    except targets.TargetUnresolved:
        return None, "dns: no address"
    except targets.TargetMalformed:
        return None, "dns: bad name"
    # Connect to an address checked, not to a second resolution of the name (which could
    # answer differently); the name still goes in Host and, for HTTPS, in SNI and the
    # certificate check. The next address is tried only when no connection was made. The
    # connection is closed after the answer (see the module's docstring): pooled, it could
    # serve another name pinned to the same address without that name's certificate check.
    netloc = target_url.netloc.decode("ascii")
    extensions = {"sni_hostname": target_url.host} if target_url.scheme == "https" else {}
    failure: httpx.HTTPError | None = None
    for address in target.addresses:
        try:
            response = await client.post(
                target_url.copy_with(host=address),
                content=body,
                headers={**headers, "host": netloc, "connection": "close"},
                extensions=extensions,
                follow_redirects=False,
            )
        except httpx.ConnectError as exc:
            failure = exc
            continue
        except httpx.HTTPError as exc:
            return None, _error_class(exc)
        except Exception:
            # Whatever else goes wrong is a failed attempt (retried, and given up after
            # MAX_ATTEMPTS), never an exception that would leave the claim to be taken again.
            log.exception("webhook POST to %s failed", target_url.host)
            return None, "request failed"
        code = response.status_code
        return code, None if response.is_success else f"HTTP {code}"
    assert failure is not None
    return None, _error_class(failure)


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    queue: Queue | None,
    *,
    client: httpx.AsyncClient,
    settings: Settings,
) -> str:
    """One attempt at a pending delivery (see :func:`_attempt`), counted by its outcome."""
    outcome = "error"
    try:
        outcome = await _attempt(sessionmaker, delivery_id, queue, client=client, settings=settings)
        return outcome
    finally:
        WEBHOOK_DELIVERIES.labels(outcome).inc()


async def _attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    queue: Queue | None,
    *,
    client: httpx.AsyncClient,
    settings: Settings,
) -> str:
    """One attempt at a pending delivery; schedules the next attempt when it fails.

    Three steps, so that no transaction or row lock is held while the receiver answers: claim
    the attempt (attempts + 1 and a lease until the job's timeout, committed), POST with no
    transaction open, then record the outcome only if the claim still holds (compare-and-set on
    attempts and the lease). A concurrent job for the same delivery finds the lease and skips; a
    worker that died mid-attempt leaves a lease that expires, after which the sweeper's job
    retries (the lease also moves ``next_attempt_at``, which the sweeper reads).
    """
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=settings.job_timeout_seconds)
    box = vault.box(settings)
    async with sessionmaker() as session, session.begin():
        delivery = await repository.claim_delivery(
            session, delivery_id, now, lease, max_attempts=MAX_ATTEMPTS
        )
        if delivery is None:
            if await repository.cancel_orphan(session, delivery_id, now):
                return "cancelled"
            if await repository.give_up_exhausted(
                session, delivery_id, now, max_attempts=MAX_ATTEMPTS
            ):
                return "failed"  # every attempt was made (the last one's outcome was lost)
            return "skipped"  # delivered, given up, or another attempt is in progress
        subscription = await repository.subscription(session, delivery.subscription_id)
        assert subscription is not None  # the claim checked it, in this transaction
        secret: str | None = None
        with contextlib.suppress(vault.SecretUnreadable):  # recorded as a failed attempt
            secret = box.open(subscription.secret)
        if secret is not None and not vault.is_sealed(subscription.secret):
            subscription.secret = box.seal(secret)  # a legacy clear secret: seal it now
        url, event_id, payload, attempts = (
            subscription.url,
            delivery.event_id,
            delivery.payload,
            delivery.attempts,
        )
    # No transaction is open from here until the outcome is recorded.
    status_code: int | None = None
    error: str | None
    if secret is None:
        error = "secret unreadable: CERDAS_WEBHOOK_SECRET_KEY changed"
        log.error("webhook delivery %d: %s", delivery_id, error)
    else:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, event_id, timestamp, body),
            "user-agent": "Cerdas-Webhooks/1",
        }
        status_code, error = await _post(client, url, body, headers, settings=settings)
    now = datetime.now(UTC)
    retry_at: datetime | None = None
    if error is None:
        status = "succeeded"
    elif attempts >= MAX_ATTEMPTS:
        status = "failed"
    else:
        status, retry_at = "pending", now + backoff(attempts, settings.webhook_backoff_seconds)
    async with sessionmaker() as session, session.begin():
        recorded = await repository.finish_delivery(
            session,
            delivery_id,
            attempts,
            lease,
            status=status,
            status_code=status_code,
            error=error,
            delivered_at=now if status == "succeeded" else None,
            next_attempt_at=retry_at,
        )
    if not recorded:
        return "superseded"  # the lease ran out and another attempt took over
    if retry_at is not None and queue is not None:
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


async def vet(principal: Principal, url: str, events: list[str], settings: Settings) -> None:
    """Every check of a new subscription that needs no database (events, scope, target), for
    the router to run before the request's first query: the target's DNS lookup (up to
    :data:`targets.RESOLVE_SECONDS`) must not hold a pooled connection or a transaction."""
    _regions(principal, events)
    await _check_target(url, settings)


def _regions(principal: Principal, events: list[str]) -> list[str] | None:
    """The regions a subscription of ``principal`` hears (None: all); 422 on unknown events,
    403 for a regional key that acts for no region."""
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise invalid(
            "body",
            "/events",
            "unknown event",
            f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})",
        )
    scope = policy.visibility(principal)
    regions: list[str] | None = None
    if not scope.everything:
        regions = sorted(
            region for region in scope.regions if policy.acts_for_region(principal, region)
        )
        if not regions:
            raise Forbidden(
                f"The key {principal.name!r} ({principal.role}) acts for no region: it may not "
                "subscribe to webhooks."
            )
    return regions


async def subscribe(
    session: AsyncSession,
    context: Context,
    url: str,
    events: list[str],
    settings: Settings,
    *,
    vetted: bool = False,
) -> tuple[WebhookSubscription, str]:
    """A new subscription of ``url`` to ``events`` in the caller's scope, and its signing secret
    in clear (stored encrypted; shown only in this answer). ``vetted``: :func:`vet` has passed
    already (its target check is then not repeated)."""
    principal = context.principal
    regions = _regions(principal, events)
    if not vetted:
        await _check_target(url, settings)
    secret = new_secret()
    subscription = await repository.add_subscription(
        session,
        WebhookSubscription(
            url=url,
            events=sorted(set(events)),
            secret=vault.box(settings).seal(secret),
            created_by=principal.key_id,
            regions=regions,
        ),
    )
    audit.record(
        session,
        context,
        action="webhook.subscribe",
        entity="webhook_subscription",
        entity_id=str(subscription.id),
        after={"url": subscription.url, "events": subscription.events, "regions": regions},
    )
    return subscription, secret


async def _check_target(url: str, settings: Settings) -> None:
    """422 when the URL's host is not a valid name, or is or resolves to a non-public address.
    A host that does not resolve now is accepted: every delivery checks again."""
    parsed = httpx.URL(url)
    try:
        targets.check_name(parsed.host)
    except targets.TargetMalformed:
        raise _bad_name(parsed.host) from None
    if settings.webhook_allow_private_targets:
        return
    try:
        await targets.check(
            parsed.host,
            parsed.port or (443 if parsed.scheme == "https" else 80),
            allow_private=False,
        )
    except targets.TargetRefused:
        raise invalid(
            "body",
            "/url",
            "private address",
            f"the host {parsed.host!r} is or resolves to a loopback, private, link-local or "
            "other non-public address; webhooks are sent to public addresses only",
        ) from None
    except targets.TargetMalformed:
        raise _bad_name(parsed.host) from None
    except targets.TargetUnresolved:
        pass


def _bad_name(host: str) -> Unprocessable:
    return invalid(
        "body",
        "/url",
        "invalid host",
        f"the host {host!r} is not a valid DNS name (an empty label, or a label over 63 "
        "characters)",
    )


def seal_secret(settings: Settings, secret: str) -> str:
    """``secret`` encrypted as the subscription keeps it (for stored idempotent answers)."""
    return vault.box(settings).seal(secret)


def open_secret(settings: Settings, stored: str) -> str:
    return vault.box(settings).open(stored)


def _owns(principal: Principal, subscription: WebhookSubscription) -> bool:
    """A national key manages every subscription, a regional key the ones it made."""
    if policy.visibility(principal).everything:
        return True
    return principal.key_id is not None and subscription.created_by == principal.key_id


async def _owned(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> WebhookSubscription:
    subscription = await repository.subscription(session, subscription_id)
    if subscription is None or not _owns(principal, subscription):
        raise NotFound(f"No webhook subscription {subscription_id}.")
    return subscription


async def subscriptions(
    session: AsyncSession, principal: Principal
) -> Sequence[WebhookSubscription]:
    """The subscriptions the caller manages: all for a national key, its own for another."""
    if policy.visibility(principal).everything:
        return await repository.subscriptions(session)
    if principal.key_id is None:
        return []
    return await repository.subscriptions(session, created_by=principal.key_id)


async def unsubscribe(session: AsyncSession, context: Context, subscription_id: uuid.UUID) -> None:
    subscription = await _owned(session, context.principal, subscription_id)
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
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, limit: int = 500
) -> Sequence[WebhookDelivery]:
    """A subscription's latest deliveries, newest first (404 unless the caller manages it)."""
    await _owned(session, principal, subscription_id)
    return await repository.deliveries(session, subscription_id, limit)
