"""Webhooks delivered by the worker to a real HTTP receiver on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from services.domain.access.service import create_key
from services.domain.webhook.signing import new_secret, verify
from services.kit.runtime import Runtime
from services.models import Assessment, WebhookDelivery
from tests.conftest import app_client, running_worker

pytestmark = pytest.mark.slow


class Receiver:
    """A ministry system's endpoint: records what arrives, fails the first ``failures``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 500 if len(self.received) < self.failures else 204
        self.received.append((headers, body, status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(app: Receiver) -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/hooks/cerdas"
    finally:
        server.should_exit = True
        await task


async def publish_case(
    live: Runtime, client: httpx.AsyncClient, url: str, events: list[str]
) -> tuple[dict[str, str], str, str]:
    async with live.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name="KemenPANRB", role="ministry-admin", regions=[])
        assessment = Assessment(
            region_code="32.75", framework_id="spbe-2020", period=2024, state="verified"
        )
        session.add(assessment)
    ministry = {"Authorization": f"Bearer {secret}"}
    subscribed = await client.post(
        "/v1/webhooks", headers=ministry, json={"url": url, "events": events}
    )
    assert subscribed.status_code == 201, subscribed.text
    return ministry, subscribed.json()["secret"], str(assessment.id)


async def wait_for_delivery(live: Runtime, status: str, seconds: float = 30) -> WebhookDelivery:
    deadline = time.monotonic() + seconds
    while True:
        async with live.sessionmaker() as session:
            delivery = await session.scalar(select(WebhookDelivery))
        if delivery is not None and delivery.status == status:
            return delivery
        assert time.monotonic() < deadline, f"no {status} delivery: {delivery and delivery.status}"
        await asyncio.sleep(0.1)


async def test_a_published_assessment_reaches_the_receiver_signed(live: Runtime) -> None:
    receiver = Receiver(failures=0)
    async with serving(receiver) as url, running_worker(live), app_client(live) as client:
        ministry, secret, assessment_id = await publish_case(
            live, client, url, ["assessment.published"]
        )
        published = await client.post(
            f"/v1/assessments/{assessment_id}/transitions",
            headers=ministry,
            json={"to": "published"},
        )
        assert published.status_code == 200
        await wait_for_delivery(live, "succeeded")
    [(headers, body, _)] = receiver.received
    assert verify(secret, headers, body)
    assert not verify(new_secret(), headers, body)  # another subscription's secret fails
    assert not verify(secret, headers, body.replace(b"32.75", b"32.71"))  # a changed body fails
    event = json.loads(body)
    assert event["type"] == "assessment.published"
    assert event["data"] == {
        "assessment_id": assessment_id,
        "region": "32.75",
        "framework": "spbe-2020",
        "period": 2024,
    }
    assert headers["webhook-id"].startswith("evt_")


async def test_a_receiver_failing_twice_gets_exactly_one_successful_delivery(
    live: Runtime,
) -> None:
    receiver = Receiver(failures=2)
    quick = await Runtime.open(live.settings.model_copy(update={"webhook_backoff_seconds": 0.2}))
    try:
        async with serving(receiver) as url, running_worker(quick), app_client(quick) as client:
            ministry, secret, assessment_id = await publish_case(
                quick, client, url, ["assessment.published"]
            )
            await client.post(
                f"/v1/assessments/{assessment_id}/transitions",
                headers=ministry,
                json={"to": "published"},
            )
            delivery = await wait_for_delivery(quick, "succeeded")
            await asyncio.sleep(1.5)  # time for any stray retry to show itself
    finally:
        await quick.close()
    assert [status for _, _, status in receiver.received] == [500, 500, 204]
    assert len({headers["webhook-id"] for headers, _, _ in receiver.received}) == 1
    assert all(verify(secret, headers, body) for headers, body, _ in receiver.received)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 204)
    async with live.sessionmaker() as session:
        assert len((await session.scalars(select(WebhookDelivery))).all()) == 1


async def test_an_overlong_webhook_url_is_422(
    client: httpx.AsyncClient, make_key: Callable[..., Awaitable[dict[str, str]]]
) -> None:
    ministry = await make_key("ministry-admin", name="KemenPANRB")
    long_url = "https://hooks.example.go.id/" + "x" * 2100
    response = await client.post(
        "/v1/webhooks",
        headers=ministry,
        json={"url": long_url, "events": ["assessment.published"]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/url"
    # 2,000 characters as sent, 2,001 once normalised (the path "/" is added): found by the
    # fuzzer as a 500 when the column refused it.
    host = ".".join(["a" * 63] * 32)
    exactly = ("https://" + host)[:2000]
    normalised = await client.post(
        "/v1/webhooks",
        headers=ministry,
        json={"url": exactly, "events": ["assessment.published"]},
    )
    assert normalised.status_code == 422, normalised.text
