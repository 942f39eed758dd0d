"""The cache of API keys' principals: a known key costs no query, and any change to a key, by
whichever process, is refused or seen from the next request on, also when the listener is lost."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text, update

from services.domain.access.cache import PrincipalCache
from services.domain.access.principal import operator_context
from services.domain.access.service import create_key, revoke_key
from services.kit.runtime import Runtime
from services.main import Service, create_app
from services.models import ApiKey, Role
from tests.api.test_results_cache import checkouts, elsewhere, until

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def gateway(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, PrincipalCache]]:
    """The gateway app on ``runtime`` and its principal cache, listening, with the listener's
    periodic check out of the way."""
    app = create_app(runtime.settings, runtime=runtime, service="gateway")
    async with app.router.lifespan_context(app):
        cache: PrincipalCache = app.state.principal_cache
        await cache.close()
        cache.check_seconds = 3600
        cache.retry_seconds = 0.05
        cache.start()
        await until(lambda: cache.listening)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c, cache


async def new_key(runtime: Runtime, role: Role = Role.SUPER_APP) -> tuple[ApiKey, dict[str, str]]:
    async with runtime.sessionmaker() as session:
        key, secret = await create_key(session, name="cached", role=role, regions=["32.71"])
        await session.commit()
    return key, {"Authorization": f"Bearer {secret}"}


async def test_a_known_key_needs_no_query(live: Runtime) -> None:
    _, headers = await new_key(live)
    async with gateway(live) as (client, cache):
        first = await client.get("/v1/me", headers=headers)
        assert first.status_code == 200, first.text
        with checkouts(live) as counted:
            again = await client.get("/v1/me", headers=headers)
        assert (again.status_code, again.json(), counted) == (200, first.json(), [0])
        assert cache.hits == 1


async def test_a_key_revoked_by_another_process_is_refused_from_the_next_request(
    live: Runtime,
) -> None:
    key, headers = await new_key(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
        assert (await client.get("/v1/me", headers=headers)).status_code == 200  # cached
        generation = cache.generation
        async with other.sessionmaker() as session:
            await revoke_key(session, operator_context("test"), key.id)
            await session.commit()
        await until(lambda: cache.generation != generation)  # the notification, after the commit
        refused = await client.get("/v1/me", headers=headers)
        assert refused.status_code == 401, refused.text


async def test_a_role_changed_by_hand_is_seen_from_the_next_request(live: Runtime) -> None:
    key, headers = await new_key(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        assert (await client.get("/v1/me", headers=headers)).json()["role"] == "super-app"
        generation = cache.generation
        async with other.engine.begin() as connection:
            await connection.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(role=Role.REGION_OPERATOR)
            )
        await until(lambda: cache.generation != generation)
        assert (await client.get("/v1/me", headers=headers)).json()["role"] == "region-operator"


async def test_a_lost_listener_falls_back_to_the_query_and_recovers(live: Runtime) -> None:
    key, headers = await new_key(live)
    async with gateway(live) as (client, cache), elsewhere(live) as other:
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
        real_connect = cache.connect

        async def refused() -> object:
            raise OSError("Postgres is restarting")

        cache.connect = refused  # type: ignore[method-assign]
        async with other.engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": cache.server_pid}
            )
        await until(lambda: not cache.listening)
        # Not listening: every request asks the database, and nothing is kept meanwhile.
        with checkouts(live) as counted:
            assert (await client.get("/v1/me", headers=headers)).status_code == 200
        assert counted == [1]
        async with unheard(other), other.engine.begin() as connection:
            await connection.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(role=Role.ASSESSOR)
            )
        assert (await client.get("/v1/me", headers=headers)).json()["role"] == "assessor"

        cache.connect = real_connect  # type: ignore[method-assign]
        await until(lambda: cache.listening and cache.connects == 2)
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
        with checkouts(live) as counted:
            assert (await client.get("/v1/me", headers=headers)).json()["role"] == "assessor"
        assert counted == [0]  # trusted again: served from the cache
        generation = cache.generation
        async with other.sessionmaker() as session:
            await revoke_key(session, operator_context("test"), key.id)
            await session.commit()
        await until(lambda: cache.generation != generation)
        assert (await client.get("/v1/me", headers=headers)).status_code == 401


@contextlib.asynccontextmanager
async def unheard(runtime: Runtime) -> AsyncIterator[None]:
    """Changes to keys notify no one meanwhile (the trigger disabled)."""
    async with runtime.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE api_key DISABLE TRIGGER api_key_notify"))
    try:
        yield
    finally:
        async with runtime.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE api_key ENABLE TRIGGER api_key_notify"))


async def test_a_key_revoked_here_is_refused_at_once(live: Runtime) -> None:
    """The revoking process forgets before it answers, without waiting for Postgres's word."""
    key, headers = await new_key(live)
    _, admin = await new_key(live, Role.MINISTRY_ADMIN)
    async with gateway(live) as (client, cache), unheard(live):
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
        assert (await client.get("/v1/me", headers=headers)).status_code == 200
        assert (cache.listening, cache.hits) == (True, 1)  # served from the cache
        revoked = await client.post(f"/v1/keys/{key.id}/revoke", headers=admin)
        assert revoked.status_code == 200, revoked.text
        refused = await client.get("/v1/me", headers=headers)
        assert refused.status_code == 401, refused.text


@pytest.mark.parametrize("service", ["gateway", "ingest", "all"])
async def test_every_service_listens_for_key_changes(live: Runtime, service: Service) -> None:
    app = create_app(live.settings, runtime=live, service=service)
    async with app.router.lifespan_context(app):
        cache: PrincipalCache = app.state.principal_cache
        await until(lambda: cache.listening)
