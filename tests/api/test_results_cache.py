"""The cache of rankings, summaries and dashboards: a hit needs no database round trip, a
recompute anywhere invalidates it, and a lost LISTEN connection never makes it serve stale data."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text, update

from services.demo import service as demo
from services.domain.recompute.service import mark_dirty
from services.kit import results_cache
from services.kit.db import make_engine, make_sessionmaker
from services.kit.results_cache import ResultsCache
from services.kit.runtime import Runtime
from services.main import create_app
from services.models import Assessment, AssessmentInput
from services.scoring.service import recompute_many

pytestmark = pytest.mark.slow

RANKING = {"framework": "spbe-2020", "period": 2024}
WAIT = 10.0  # a bound on moments that should take milliseconds, not a timing assertion


@contextlib.asynccontextmanager
async def gateway(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, ResultsCache]]:
    """The gateway app on ``runtime`` and its cache, listening, with the listener's periodic
    re-read of the sequence out of the way: only a notification can invalidate."""
    app = create_app(runtime.settings, runtime=runtime, service="gateway")
    async with app.router.lifespan_context(app):
        cache: ResultsCache = app.state.results_cache
        await cache.close()
        cache.check_seconds = 3600
        cache.retry_seconds = 0.05
        cache.start()
        await until(lambda: cache.listening)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c, cache


@contextlib.asynccontextmanager
async def elsewhere(live: Runtime) -> AsyncIterator[Runtime]:
    """Another process's view of the same database: an engine of its own, whose bumps reach
    the gateway only through Postgres."""
    engine = make_engine(live.settings.database_url or "", pool_size=2)
    try:
        yield Runtime(live.settings, engine, make_sessionmaker(engine), live.queue)
    finally:
        await engine.dispose()


async def until(condition: Callable[[], bool], seconds: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def checkouts(runtime: Runtime) -> Any:
    """Counts the connections the app's engine hands out: a round trip needs one."""
    counted = [0]

    def count(*_: object) -> None:
        counted[0] += 1

    event.listen(runtime.engine.sync_engine, "checkout", count)
    try:
        yield counted
    finally:
        event.remove(runtime.engine.sync_engine, "checkout", count)


async def set_bogor(runtime: Runtime, value: str) -> None:
    """Kota Bogor's SPBE 2024 index as imported from its results letter, recomputed."""
    async with runtime.sessionmaker() as session, session.begin():
        bogor = await session.scalar(
            select(Assessment.id).where(
                Assessment.framework_id == "spbe-2020",
                Assessment.region_code == "32.71",
                Assessment.period == 2024,
            )
        )
        await session.execute(
            update(AssessmentInput)
            .where(AssessmentInput.assessment_id == bogor)
            .values(official_value=value)
        )
        await mark_dirty(session, [bogor], None)
    await demo.settle(runtime)


async def leader(client: httpx.AsyncClient) -> str:
    response = await client.get("/v1/rankings", params=RANKING)
    assert response.status_code == 200, response.text
    return str(response.json()["items"][0]["region"])


async def test_a_cached_ranking_is_served_without_a_database_round_trip(live: Runtime) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache):
        first = await client.get("/v1/rankings", params=RANKING)
        dashboard = await client.get("/v1/dashboard", params=RANKING)
        hits = cache.hits
        with checkouts(live) as counted:
            again = await client.get("/v1/rankings", params=RANKING)
            dashboard_again = await client.get("/v1/dashboard", params=RANKING)
        assert counted == [0]
        assert cache.hits == hits + 2
        assert (again.status_code, again.content) == (200, first.content)
        assert dashboard_again.content == dashboard.content
        # The same read while the listener is not trusted asks the sequence: the counter
        # above would have seen that round trip.
        await cache.close()
        with checkouts(live) as counted:
            assert (await client.get("/v1/rankings", params=RANKING)).content == first.content
        assert counted == [1]


async def test_a_recompute_in_another_process_invalidates_the_cache(live: Runtime) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        assert await leader(client) == "32.75"
        await set_bogor(other, "3.90")
        # Only the notification can tell the gateway (no re-read for an hour, no local bump).
        deadline = asyncio.get_running_loop().time() + WAIT
        while await leader(client) != "32.71":
            assert asyncio.get_running_loop().time() < deadline, "never invalidated"
            await asyncio.sleep(0.01)
        assert cache.lookups == 0


async def test_a_lost_listener_never_serves_stale_data_and_recovers(live: Runtime) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        assert await leader(client) == "32.75"  # cached
        real_connect = cache.connect

        async def refused() -> Any:
            raise OSError("Postgres is restarting")

        cache.connect = refused  # type: ignore[method-assign]
        async with other.engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": cache.server_pid}
            )
        await until(lambda: not cache.listening)
        await set_bogor(other, "3.90")  # its notification reaches no one
        assert await leader(client) == "32.71"  # at once: the read asked the sequence
        assert cache.lookups >= 1

        cache.connect = real_connect  # type: ignore[method-assign]
        await until(lambda: cache.listening and cache.connects == 2)
        await set_bogor(other, "3.72")
        deadline = asyncio.get_running_loop().time() + WAIT
        while await leader(client) != "32.75":
            assert asyncio.get_running_loop().time() < deadline, "never invalidated"
            await asyncio.sleep(0.01)
        with checkouts(live) as counted:
            assert await leader(client) == "32.75"
        assert counted == [0]


async def test_a_recompute_of_another_framework_leaves_the_ranking_cached(live: Runtime) -> None:
    await demo.load(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        ranking = await client.get("/v1/rankings", params=RANKING)
        async with other.sessionmaker() as session:
            gmsc = (
                await session.scalars(
                    select(Assessment.id).where(Assessment.framework_id == "gmsc-2023")
                )
            ).all()
        assert gmsc
        heard = cache.version_heard
        await recompute_many(other.sessionmaker, gmsc, None, force=True)
        await until(lambda: cache.version_heard > heard)
        hits = cache.hits
        with checkouts(live) as counted:
            again = await client.get("/v1/rankings", params=RANKING)
        assert (counted, cache.hits, again.content) == ([0], hits + 1, ranking.content)
        # A bump that names no framework (a workflow transition) empties it.
        await results_cache.bump(other.engine)
        await until(lambda: cache.version_heard > heard + 1)
        with checkouts(live) as counted:
            assert (await client.get("/v1/rankings", params=RANKING)).content == ranking.content
        assert counted != [0]  # rebuilt


async def test_the_listeners_periodic_check_keeps_what_the_bumps_it_heard_left(
    live: Runtime,
) -> None:
    """The listener's re-read of the sequence invalidates everything only for a bump it did not
    hear; bumps it heard with their scopes (another framework's recompute) leave entries good."""
    await demo.load(live)
    app = create_app(live.settings, runtime=live, service="gateway")
    async with app.router.lifespan_context(app), elsewhere(live) as other:
        cache: ResultsCache = app.state.results_cache
        await cache.close()
        cache.check_seconds = 0.02
        cache.start()
        await until(lambda: cache.listening)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as client:
            ranking = await client.get("/v1/rankings", params=RANKING)
            heard = cache.version_heard
            await results_cache.bump(other.engine, frameworks=["gmsc-2023"])
            await until(lambda: cache.version_heard > heard)
            checks = cache.checks
            await until(lambda: cache.checks >= checks + 3)
            with checkouts(live) as counted:
                again = await client.get("/v1/rankings", params=RANKING)
            assert (counted, again.content) == ([0], ranking.content)
            assert cache.connects == 1
