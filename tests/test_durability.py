"""Outages and contention, in process, against real servers: Redis away at start and while a
worker runs, the database unreachable or its pool exhausted, concurrent identical writes.

These tests commit (the worker and concurrent requests read through their own connections); the
``live`` fixture truncates what they wrote. The process-level fault scenarios (SIGKILL on the
answer, servers restarted under load) are in tests/reliability/.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.types import Message, Receive, Scope, Send

from services.domain.access.service import create_key
from services.kit.db import make_engine, make_sessionmaker
from services.kit.queue import Queue
from services.kit.runtime import Runtime
from services.kit.storage import object_key
from services.main import create_app
from services.models import Assessment, AssessmentInput, EvidenceItem, MetricPoint, ResultNode
from services.scoring.worker import SupervisedWorker
from tests.conftest import app_client
from tests.evidence_store import EvidenceStore
from tests.ingest.test_evidence import PDF
from tests.scoring.test_recompute import _kab_kota, ministry_key, start_redis, wait_for

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def serving(runtime: Runtime, *, worker: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The app as `cerdas serve` builds it (optionally with its in-process worker)."""
    app = create_app(runtime.settings, runtime=runtime, in_process_worker=worker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as c:
            yield c


async def until(condition: Callable[[], bool], seconds: float) -> None:
    async def check() -> bool:
        return condition()

    await wait_for(check, seconds=seconds)


async def reflected(runtime: Runtime, value: str, revision: int, expected: int) -> bool:
    """Whether ``expected`` assessments show ``value`` for app integration at ``revision``."""
    async with runtime.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(ResultNode)
            .where(
                ResultNode.node_id == "app_integration",
                ResultNode.value == Decimal(value),
                ResultNode.input_revision == revision,
            )
        )
    return count == expected


async def test_api_and_worker_start_without_redis_and_catch_up_within_seconds(
    live: Runtime, tmp_path: Path
) -> None:
    socket = tmp_path / "redis.sock"
    settings = live.settings.model_copy(
        update={"redis_url": f"unix://{socket}", "sweep_seconds": 1}
    )
    own = await Runtime.open(settings)  # Redis is not running: the process starts anyway
    redis_server = None
    try:
        key = await ministry_key(own)
        regions = [code async for code in _kab_kota(own, 20)]
        async with serving(own, worker=True) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            checks = ready.json()["checks"]
            assert checks["redis"] == "unreachable"
            assert checks["database"] == "ok"
            assert checks["worker"].startswith(("starting", "reconnecting"))
            for region in regions:  # writes are accepted while Redis is down
                points = [
                    {"region": region, "metric": metric, "period": "2024-06", "value": value}
                    for metric, value in (("integrated_apps", 100), ("integrated_apps_target", 400))
                ]
                response = await client.post(
                    "/v1/metrics:batch", json={"points": points}, headers=key
                )
                assert response.status_code == 200, response.text
            run = await client.post(
                "/v1/recompute-runs", json={"framework": "smartcity-spbe-linked"}, headers=key
            )
            assert run.status_code == 202, run.text

            redis_server = start_redis(socket)
            back = time.monotonic()
            await wait_for(lambda: reflected(own, "25.00", 1, len(regions)), seconds=30)
            caught_up = time.monotonic() - back

            async def run_finished() -> bool:
                job = await client.get(f"/v1/jobs/{run.json()['id']}", headers=key)
                return bool(job.json()["state"] == "done")

            await wait_for(run_finished, seconds=30)
            run_done = time.monotonic() - back
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["worker"] == "ok"
        print(
            f"\n{len(regions)} assessments recomputed {caught_up:.1f} s after Redis came back; "
            f"the run requested during the outage finished after {run_done:.1f} s"
        )
    finally:
        await own.close()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)


async def test_a_running_worker_outlives_a_redis_outage(live: Runtime, tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    redis_server = start_redis(socket)
    settings = live.settings.model_copy(
        update={"redis_url": f"unix://{socket}", "sweep_seconds": 1}
    )
    own = await Runtime.open(settings)
    supervised = SupervisedWorker(own, max_backoff=1.0)
    task = asyncio.create_task(supervised.run())
    try:
        key = await ministry_key(own)
        await until(lambda: supervised.running, seconds=10)
        redis_server.terminate()
        redis_server.wait(timeout=10)
        await until(lambda: supervised.state.startswith("reconnecting"), seconds=10)
        assert not task.done()
        point = {"region": "32.71", "metric": "integrated_apps", "period": "2024-06", "value": 50}
        target = {**point, "metric": "integrated_apps_target", "value": 200}
        async with app_client(own) as client:
            response = await client.post(
                "/v1/metrics:batch", json={"points": [point, target]}, headers=key
            )
            assert response.status_code == 200, response.text
        redis_server = start_redis(socket)
        await until(lambda: supervised.running, seconds=15)
        await wait_for(lambda: reflected(own, "25.00", 1, 1), seconds=20)
        assert supervised.restarts >= 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await own.close()
        redis_server.terminate()
        redis_server.wait(timeout=10)


async def test_an_unreachable_database_is_503_and_readyz_says_so(live: Runtime) -> None:
    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:9/cerdas")
    runtime = Runtime(live.settings, engine, make_sessionmaker(engine), live.queue)
    try:
        async with app_client(runtime) as client:
            response = await client.get("/v1/regions/32.71")
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "database-unavailable"
            assert response.headers["retry-after"] == "5"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"].startswith("unreachable")
    finally:
        await engine.dispose()


async def test_an_exhausted_pool_answers_503_at_once(live: Runtime) -> None:
    engine = make_engine(str(live.engine.url), pool_size=1, pool_timeout=0.5)
    runtime = Runtime(live.settings, engine, make_sessionmaker(engine), live.queue)
    held = [await engine.connect(), await engine.connect()]  # pool_size + overflow
    try:
        async with app_client(runtime) as client:
            started = time.monotonic()
            response = await client.get("/v1/regions/32.71")
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "busy"
            assert response.headers["retry-after"] == "1"
            assert elapsed < 5
            for connection in held:
                await connection.close()
            assert (await client.get("/v1/regions/32.71")).status_code == 200
    finally:
        for connection in held:
            await connection.close()
        await engine.dispose()


async def test_redis_down_does_not_stop_keyed_requests(live: Runtime, tmp_path: Path) -> None:
    queue = Queue.connect(f"unix://{tmp_path}/nothing.sock")
    settings = live.settings.model_copy(update={"rate_limit_per_minute": 1})
    runtime = Runtime(settings, live.engine, live.sessionmaker, queue)
    key = await ministry_key(runtime)
    try:
        async with app_client(runtime) as client:
            statuses = [
                (await client.get("/v1/metrics", headers=key)).status_code for _ in range(3)
            ]
        assert statuses == [200, 200, 200]  # the limit cannot be checked: it fails open
    finally:
        await queue.close()


@pytest.mark.storage_backends("local", "s3")
async def test_identical_concurrent_uploads_store_one_item(
    live: Runtime, evidence_store: EvidenceStore
) -> None:
    async with live.sessionmaker() as session, session.begin():
        assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
        session.add(assessment)
    key = await ministry_key(live)
    settings = live.settings.model_copy(update=evidence_store.overrides)
    runtime = Runtime(settings, live.engine, live.sessionmaker, live.queue)
    async with app_client(runtime) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/evidence",
                    headers=key,
                    data={"assessment_id": str(assessment.id), "node_ids": "output"},
                    files={"file": ("perwali.pdf", PDF, "application/pdf")},
                )
                for _ in range(6)
            )
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [201], [r.text for r in responses]
    assert len({response.json()["id"] for response in responses}) == 1
    async with live.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(EvidenceItem)) == 1
    assert evidence_store.contents() == [object_key(hashlib.sha256(PDF).hexdigest())]


async def test_concurrent_creation_of_one_assessment_is_one_201_and_409s(live: Runtime) -> None:
    key = await ministry_key(live)
    body = {"region": "32.71", "framework": "spbe-2020", "period": 2025}
    async with app_client(live) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/assessments", json=body, headers=key) for _ in range(6))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 5, [r.text for r in responses]


async def test_every_write_is_committed_when_its_status_line_goes_out(live: Runtime) -> None:
    """At the instant each 2xx status line is sent, another connection already sees the write:
    the answer follows the commit (with a commit after the answer this sees nothing)."""
    key = await ministry_key(live)
    async with live.sessionmaker() as session, session.begin():
        _, secret = await create_key(
            session, name="Diskominfo Kota Bogor", role="region-operator", regions=["32.71"]
        )
    region = {"Authorization": f"Bearer {secret}"}
    app = create_app(live.settings, runtime=live)
    seen: list[tuple[str, int]] = []

    async def visible(path: str) -> int:
        async with live.engine.connect() as connection:
            if path.endswith(":batch"):
                query = select(func.count()).select_from(MetricPoint)
            elif path.endswith("/evidence"):
                query = select(func.count()).select_from(EvidenceItem)
            elif path.endswith("/inputs"):
                query = select(func.count()).select_from(AssessmentInput)
            elif path.endswith("/transitions"):
                query = select(func.count()).where(Assessment.state == "submitted")
            else:
                query = select(func.count()).select_from(Assessment)
            return int(await connection.scalar(query) or 0)

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] != "GET":
                seen.append((scope["path"], await visible(scope["path"])))
            await send(message)

        await app(scope, receive, watch)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=observed)
        async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as client:
            opened = await client.post(
                "/v1/assessments",
                json={"region": "32.71", "framework": "spbe-2020", "period": 2024},
                headers=key,
            )
            assert opened.status_code == 201, opened.text
            aid = opened.json()["id"]
            point = {"region": "32.71", "metric": "integrated_apps", "period": "2024-06"}
            for response in (
                await client.post(
                    "/v1/metrics:batch",
                    json={"points": [{**point, "value": 148}]},
                    headers={**key, "Idempotency-Key": "bsw-2024-06"},
                ),
                await client.put(
                    f"/v1/assessments/{aid}/inputs", json={"values": {"I1": 3}}, headers=region
                ),
                await client.post(
                    "/v1/evidence",
                    headers=key,
                    data={"assessment_id": aid, "node_ids": "I1"},
                    files={"file": ("perwali.pdf", PDF, "application/pdf")},
                ),
                await client.post(
                    f"/v1/assessments/{aid}/transitions", json={"to": "submitted"}, headers=region
                ),
            ):
                assert response.is_success, response.text
    assert seen == [
        ("/v1/assessments", 1),
        ("/v1/metrics:batch", 1),
        (f"/v1/assessments/{aid}/inputs", 1),
        ("/v1/evidence", 1),
        (f"/v1/assessments/{aid}/transitions", 1),
    ]


async def test_a_worker_closed_with_jobs_running_is_restarted_not_stopped(live: Runtime) -> None:
    """arq's close cancels the running jobs and gathers them; their CancelledError must not end
    the supervisor (it did: `cerdas worker` exited 0 in a Redis outage under load)."""
    from services.kit.queue import connect_lazily
    from services.scoring.worker import build_worker

    assert live.settings.redis_url
    worker = build_worker(live, handle_signals=False)
    worker._pool = connect_lazily(live.settings.redis_url)
    job = asyncio.create_task(asyncio.sleep(30))
    worker.tasks["recompute:busy"] = job
    await SupervisedWorker._close(worker)  # returns: the supervisor goes on to reconnect
    assert job.cancelled()


async def test_slow_uploads_hold_no_database_connection(live: Runtime) -> None:
    """Uploads whose bodies are still arriving do not take connections from the pool: with two
    connections in all and five uploads stalled mid-body, other requests are served."""
    engine = make_engine(str(live.engine.url), pool_size=1, pool_timeout=0.5)
    runtime = Runtime(live.settings, engine, make_sessionmaker(engine), live.queue)
    async with runtime.sessionmaker() as session, session.begin():
        assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
        session.add(assessment)
    key = await ministry_key(runtime)
    release = asyncio.Event()
    boundary = "cerdas-test-boundary"

    def body(n: int) -> AsyncIterator[bytes]:
        async def parts() -> AsyncIterator[bytes]:
            yield (
                f"--{boundary}\r\nContent-Disposition: form-data; name=assessment_id\r\n\r\n"
                f"{assessment.id}\r\n--{boundary}\r\n"
                "Content-Disposition: form-data; name=node_ids\r\n\r\noutput\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=file; "
                f'filename="perwali-{n}.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
            ).encode() + PDF
            await release.wait()  # the client stalls mid-file
            yield f"% upload {n}\n\r\n--{boundary}--\r\n".encode()

        return parts()

    try:
        async with app_client(runtime) as client:
            uploads = [
                asyncio.create_task(
                    client.post(
                        "/v1/evidence",
                        content=body(n),
                        headers={
                            **key,
                            "Content-Type": f"multipart/form-data; boundary={boundary}",
                        },
                    )
                )
                for n in range(5)
            ]
            await asyncio.sleep(0.5)  # every upload has authenticated and is receiving
            served = await client.get("/v1/metrics", headers=key)
            assert served.status_code == 200, served.text
            release.set()
            finished = await asyncio.gather(*uploads)
        assert [response.status_code for response in finished] == [201] * 5
    finally:
        await engine.dispose()


class BlackholeProxy:
    """A TCP proxy to Redis that can silently stop forwarding (a link that drops packets:
    connections stay open, nothing arrives), as a broken network does."""

    def __init__(self, redis_url: str) -> None:
        from arq.connections import RedisSettings

        self.upstream = RedisSettings.from_dsn(redis_url)
        self.dropping = False
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/{self.upstream.database}"

    async def __aenter__(self) -> BlackholeProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.upstream.unix_socket_path:
            up_reader, up_writer = await asyncio.open_unix_connection(
                self.upstream.unix_socket_path
            )
        else:
            up_reader, up_writer = await asyncio.open_connection(
                str(self.upstream.host), self.upstream.port
            )

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    if not self.dropping:  # dropped on the floor, connection left open
                        sink.write(data)
                        await sink.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()
        up_writer.close()


async def test_a_worker_whose_redis_link_goes_silent_reconnects(live: Runtime) -> None:
    assert live.settings.redis_url
    async with BlackholeProxy(live.settings.redis_url) as proxy:
        settings = live.settings.model_copy(update={"redis_url": proxy.url})
        own = await Runtime.open(settings)
        supervised = SupervisedWorker(own, max_backoff=1.0)
        task = asyncio.create_task(supervised.run())
        try:
            await until(lambda: supervised.running, seconds=10)
            proxy.dropping = True  # no error, no close: replies just stop coming
            await until(lambda: supervised.state.startswith("reconnecting"), seconds=15)
            proxy.dropping = False
            await until(lambda: supervised.running, seconds=15)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await own.close()
