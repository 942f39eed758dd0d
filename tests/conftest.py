"""Test harness: a real Postgres built by the migrations and a real Redis.

TEST_DATABASE_URL / TEST_REDIS_URL point the suite at running servers; unset, it starts the
embedded ones in a temporary folder, so the suite passes on a machine with neither.
Each test runs inside one outer transaction that is rolled back at the end; the app under test
gets sessions joined to that transaction through savepoints, so a request's commit or rollback
behaves as in production and nothing leaks into the next test.

Evidence tests marked ``@pytest.mark.storage_backends("local", "s3")`` run once per evidence
storage backend: the local folder, and an S3-compatible server (moto's, on 127.0.0.1, started
once per session by the first test that needs it); each run has a store of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.kit import ratelimit
from services.kit.embedded import EmbeddedServers
from services.kit.queue import Queue
from services.kit.runtime import Runtime
from services.kit.settings import Settings, to_asyncpg_url
from services.main import create_app, prepare_database
from services.scoring.worker import build_worker
from tests.evidence_store import EvidenceStore, LocalStore, S3Server, S3Store, start_s3_server
from tests.oidc.harness import Provider, start_provider


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("storage_backends")
    if marker is not None and "storage_backend" in metafunc.fixturenames:
        metafunc.parametrize("storage_backend", marker.args, indirect=True)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL) of the servers the suite talks to."""
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    embedded = EmbeddedServers(
        tmp_path_factory.mktemp("servers"),
        want_postgres=not database_url,
        want_redis=not redis_url,
    )
    if not (database_url and redis_url):
        embedded.start()
    try:
        yield (
            to_asyncpg_url(database_url or str(embedded.database_url)),
            redis_url or str(embedded.redis_url),
        )
    finally:
        embedded.stop()


@pytest.fixture
async def scratch(servers: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    """An empty database beside the suite's, dropped afterwards."""
    url = servers[0]
    name = f"cerdas_migration_{uuid.uuid4().hex[:8]}"
    admin_dsn = url.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(with_database(admin_dsn, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_async_engine(with_database(url, name))
    try:
        yield engine
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def with_database(url: str, name: str) -> str:
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    database_url, redis_url = servers
    data_dir: Path = tmp_path_factory.mktemp("data")
    return Settings(
        DATABASE_URL=database_url, REDIS_URL=redis_url, data_dir=data_dir, db_pool_size=4
    )


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = await Runtime.open(settings)
    await prepare_database(runtime)
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture(scope="session")
def engine(runtime: Runtime) -> AsyncEngine:
    return runtime.engine


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def queue(runtime: Runtime) -> Queue:
    """The queue, emptied first: jobs enqueued by an earlier test's rolled-back writes would
    otherwise wait for the next worker that starts."""
    await runtime.queue.redis.flushdb()
    # Redis just answered: a breaker left open by an earlier test's outage is closed, so this
    # test sees the queue as a fresh process would.
    runtime.queue.succeeded()
    return runtime.queue


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server on 127.0.0.1 with one bucket, for the whole session."""
    with start_s3_server() as server:
        yield server


@pytest.fixture
def storage_backend(request: pytest.FixtureRequest) -> str:
    """The evidence backend under test: "local" unless the test is marked storage_backends."""
    return str(getattr(request, "param", "local"))


@pytest.fixture
def evidence_store(
    request: pytest.FixtureRequest, storage_backend: str, settings: Settings
) -> EvidenceStore:
    """Where the app under test keeps evidence, and what is in it. A test run per backend gets
    a store of its own (a folder, a key prefix); others share the session's folder."""
    if storage_backend == "s3":
        return S3Store(request.getfixturevalue("s3_server"))
    if request.node.get_closest_marker("storage_backends") is not None:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return LocalStore(tmp_path / "evidence", overrides={"evidence_dir": tmp_path / "evidence"})
    return LocalStore(settings.evidence_path)


@pytest.fixture
def app_for(
    runtime: Runtime,
    sessionmaker: async_sessionmaker[AsyncSession],
    queue: Queue,
    evidence_store: EvidenceStore,
) -> Callable[..., AbstractAsyncContextManager[FastAPI]]:
    """The app, started, with some settings changed, writes confined to the test."""

    @contextlib.asynccontextmanager
    async def make(**overrides: object) -> AsyncIterator[FastAPI]:
        settings = runtime.settings.model_copy(update={**evidence_store.overrides, **overrides})
        test_runtime = Runtime(settings, runtime.engine, sessionmaker, runtime.queue)
        app = create_app(settings, runtime=test_runtime)
        async with app.router.lifespan_context(app):
            yield app

    return make


@pytest.fixture
def client_for(
    app_for: Callable[..., AbstractAsyncContextManager[FastAPI]],
) -> Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]:
    """Clients for the app with some settings changed, writes confined to the test."""

    @contextlib.asynccontextmanager
    async def make(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        async with app_for(**overrides) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
                yield c

    return make


@pytest.fixture
async def client(
    client_for: Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]],
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app, its writes confined to the test's transaction."""
    async with client_for() as c:
        yield c


@pytest.fixture
def make_key(session: AsyncSession):  # type: ignore[no-untyped-def]
    """Create an API key in the test's transaction; returns the Authorization header."""
    from services.domain.access.service import create_key

    async def make(role: str, *regions: str, name: str | None = None) -> dict[str, str]:
        _, secret = await create_key(
            session,
            name=name or f"{role} {' '.join(regions)}".strip(),
            role=role,
            regions=list(regions),
        )
        await session.commit()
        return {"Authorization": f"Bearer {secret}"}

    return make


WRITTEN_TABLES = (
    "assessment, assessment_input, assessor_output, recompute_request, result_state, "
    "result_node, recompute_run, metric_point, idempotency_record, evidence_item, "
    "evidence_revision, evidence_object, "
    "api_key, person, audit_event, assessment_assignment, evidence_request, "
    "webhook_subscription, "
    "webhook_delivery"
)


@pytest.fixture
async def live(runtime: Runtime) -> AsyncIterator[Runtime]:
    """The session's runtime for tests that must commit (a worker reads through its own
    connections); everything they wrote is truncated afterwards."""
    await runtime.queue.redis.flushdb()
    try:
        yield runtime
    finally:
        async with runtime.engine.begin() as connection:
            # The audit trail refuses TRUNCATE (a trigger); only a superuser's replica-role
            # session, as here in tests, skips triggers.
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            await connection.execute(text(f"TRUNCATE {WRITTEN_TABLES} CASCADE"))
        await runtime.queue.redis.flushdb()


@contextlib.asynccontextmanager
async def app_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the app on ``runtime``, whose writes commit."""
    app = create_app(runtime.settings, runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c


@contextlib.asynccontextmanager
async def running_worker(runtime: Runtime) -> AsyncIterator[None]:
    """An in-process scoring worker on ``runtime``, stopped on the way out."""
    worker = build_worker(runtime, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        try:
            await worker.close()
        except asyncio.CancelledError:
            # arq's close gathers its job tasks; one it cancelled mid-job (a cron sweep saving
            # its result) ends the gather with CancelledError. Only our own cancellation counts.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """A real OpenID Provider (oidc-provider on Node) on 127.0.0.1, for the whole session."""
    provider = start_provider(tmp_path_factory.mktemp("oidc"))
    try:
        yield provider
    finally:
        provider.stop()


async def fresh_rate_window(needed_seconds: float = 15.0) -> None:
    """Wait, if need be, until the rate limit's current one-minute window has at least
    ``needed_seconds`` left: a test counting requests against a limit must not see its count
    reset halfway by the window's turn (services.kit.ratelimit)."""
    left = ratelimit.WINDOW_SECONDS - time.time() % ratelimit.WINDOW_SECONDS
    if left < needed_seconds:
        await asyncio.sleep(left + 0.05)
