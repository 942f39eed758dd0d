"""Anonymous cached reads answered before routing (services.kit.results_cache.CachedHits): the
same answer as the full stack, still rate limited, never for a key's caller, never stale."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.demo import service as demo
from services.domain.access.service import create_key
from services.kit import results_cache
from services.kit.metrics import HTTP_REQUESTS
from services.kit.results_cache import ResultsCache
from services.kit.runtime import Runtime
from services.main import create_app
from services.models import Assessment, AssessmentState, Role
from tests.api.test_results_cache import RANKING, elsewhere, set_bogor, until
from tests.conftest import fresh_rate_window

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def gateway(
    runtime: Runtime, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, ResultsCache]]:
    """The gateway (settings changed by ``settings``) and its results cache, listening, with
    the listener's periodic re-read out of the way."""
    changed = runtime.settings.model_copy(update=settings)
    app = create_app(
        changed,
        runtime=Runtime(changed, runtime.engine, runtime.sessionmaker, runtime.queue),
        service="gateway",
    )
    async with app.router.lifespan_context(app):
        cache: ResultsCache = app.state.results_cache
        await cache.close()
        cache.check_seconds = 3600
        cache.retry_seconds = 0.05
        cache.start()
        await until(lambda: cache.listening)
        transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c, cache


def shown(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
    return response.status_code, response.content, headers


async def anonymous_count(runtime: Runtime) -> int:
    """The requests the anonymous rate limit counted for the test client's address."""
    keys = await runtime.queue.redis.keys("cerdas:rate:anon:10.0.0.9:*")
    return sum([int(await runtime.queue.redis.get(key)) for key in keys])


def counted(route: str, status: str) -> float:
    return HTTP_REQUESTS.labels("GET", route, status)._value.get()  # type: ignore[attr-defined]


async def test_a_repeated_anonymous_read_is_answered_before_routing_as_the_full_stack_would(
    live: Runtime,
) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache):
        for path in ("/v1/rankings", "/v1/dashboard"):
            first = await client.get(path, params=RANKING)
            assert first.status_code == 200, first.text
            before = (cache.early_hits, counted(path, "200"))
            again = await client.get(path, params=RANKING, headers={"X-Request-ID": "r-1"})
            assert (cache.early_hits, counted(path, "200")) == (before[0] + 1, before[1] + 1)
            assert shown(again) == shown(first)
            assert again.headers["x-request-id"] == "r-1"
            etag = first.headers["etag"]
            unchanged = await client.get(path, params=RANKING, headers={"If-None-Match": etag})
            assert (unchanged.status_code, unchanged.content) == (304, b"")
            assert cache.early_hits == before[0] + 2


async def test_a_summary_is_answered_before_routing_only_to_whom_the_full_stack_answered(
    live: Runtime,
) -> None:
    await demo.load(live)
    async with live.sessionmaker() as session:
        unpublished = await session.scalar(
            select(Assessment.id).where(Assessment.state != AssessmentState.PUBLISHED).limit(1)
        )
        published = await session.scalar(
            select(Assessment.id).where(Assessment.state == AssessmentState.PUBLISHED).limit(1)
        )
        _, secret = await create_key(session, name="admin", role=Role.MINISTRY_ADMIN, regions=[])
        await session.commit()
    assert unpublished is not None
    assert published is not None
    admin = {"Authorization": f"Bearer {secret}"}
    async with gateway(live) as (client, cache):
        # A key's answer is never reachable anonymously, however often it was asked.
        for _ in range(2):
            seen = await client.get(f"/v1/assessments/{unpublished}/summary", headers=admin)
            assert seen.status_code == 200, seen.text
        hidden = await client.get(f"/v1/assessments/{unpublished}/summary")
        assert hidden.status_code == 404, hidden.text
        assert cache.early_hits == 0
        # An anonymous one is, and a key's caller of the same path still goes the full way.
        public = await client.get(f"/v1/assessments/{published}/summary")
        assert public.status_code == 200, public.text
        assert (await client.get(f"/v1/assessments/{published}/summary")).content == public.content
        assert cache.early_hits == 1
        keyed = await client.get(f"/v1/assessments/{published}/summary", headers=admin)
        assert keyed.status_code == 200
        assert cache.early_hits == 1


async def test_a_change_heard_sends_the_next_read_through_the_full_stack(live: Runtime) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        first = await client.get("/v1/rankings", params=RANKING)
        assert first.json()["items"][0]["region"] == "32.75"
        heard = cache.version_heard
        await set_bogor(other, "3.90")
        await until(lambda: cache.version_heard > heard)
        early, misses = cache.early_hits, cache.misses
        changed = await client.get("/v1/rankings", params=RANKING)
        assert changed.json()["items"][0]["region"] == "32.71"
        assert (cache.early_hits, cache.misses) == (early, misses + 1)
        # Counted before routing, then sent on to the full stack: counted once all the same.
        assert await anonymous_count(live) == 2
        # Not listening: never before routing (the full stack asks the sequence).
        assert (await client.get("/v1/rankings", params=RANKING)).status_code == 200
        assert cache.early_hits == early + 1
        await cache.close()
        await results_cache.bump(other.engine)
        assert (await client.get("/v1/rankings", params=RANKING)).status_code == 200
        assert cache.early_hits == early + 1


async def test_reads_answered_before_routing_count_against_the_anonymous_limit_once(
    live: Runtime,
) -> None:
    await demo.load(live)
    async with gateway(live, anonymous_rate_limit_per_minute=4) as (client, cache):
        await fresh_rate_window()
        answers = [(await client.get("/v1/rankings", params=RANKING)) for _ in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
        assert cache.early_hits == 3
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate-limited"
        assert refused.json()["instance"] == "/v1/rankings"
        assert int(refused.headers["retry-after"]) >= 1
        assert await anonymous_count(live) == 6
