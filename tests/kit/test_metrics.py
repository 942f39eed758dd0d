"""GET /metrics: requests by route template, the worker's recomputes, evidence bytes, the
scrape-time gauges (and what happens when their sources are down), multiprocess mode."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.service import create_key
from services.kit.db import make_engine, make_sessionmaker
from services.kit.metrics import MULTIPROC_DIR_ENV, exposition
from services.kit.queue import Queue
from services.kit.runtime import Runtime
from services.main import create_app
from services.models import Assessment
from tests.conftest import app_client, fresh_rate_window, running_worker

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
POINTS = [
    {"region": "32.71", "metric": "integrated_apps", "period": "2024-12", "value": 148},
    {"region": "32.71", "metric": "integrated_apps_target", "period": "2024-12", "value": 327},
]
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels (parsing also proves the format)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


async def test_a_metric_push_is_counted_by_route_template_status_and_latency(
    client: httpx.AsyncClient, make_key: Callable[..., object]
) -> None:
    key = await make_key("super-app", "32.71")  # type: ignore[misc]
    route = "/v1/metrics:batch"
    before = await scrape(client)
    pushed = await client.post("/v1/metrics:batch", json={"points": POINTS}, headers=key)
    assert pushed.status_code == 200, pushed.text
    assert (await client.get("/v1/regions/32.71")).status_code == 200
    assert (await client.get("/v1/regions/99.99")).status_code == 404
    after = await scrape(client)

    counted = "cerdas_http_requests_total"
    assert value(after, counted, method="POST", route=route, status="200") == (
        value(before, counted, method="POST", route=route, status="200") + 1
    )
    latency = "cerdas_http_request_duration_seconds"
    assert value(after, f"{latency}_count", method="POST", route=route) == (
        value(before, f"{latency}_count", method="POST", route=route) + 1
    )
    assert value(after, f"{latency}_sum", method="POST", route=route) > value(
        before, f"{latency}_sum", method="POST", route=route
    )
    assert value(after, f"{latency}_bucket", method="POST", route=route, le="+Inf") >= 1
    # Route templates, never raw paths: no region code (or any id) in a label.
    assert value(after, counted, method="GET", route="/v1/regions/{code}", status="404") >= 1
    assert "32.71" not in after
    assert "99.99" not in after


async def test_metrics_is_not_rate_limited_nor_in_the_openapi_document(
    client_for: ClientFor,
) -> None:
    async with client_for(anonymous_rate_limit_per_minute=1) as client:
        await fresh_rate_window()
        for _ in range(5):
            await scrape(client)
        assert (await client.get("/v1/frameworks")).status_code == 200
        assert (await client.get("/v1/frameworks")).status_code == 429  # the limit is on
        spec = (await client.get("/openapi.json")).json()
    assert "/metrics" not in spec["paths"]


async def test_outbox_backlog_and_queue_depth_are_read_at_scrape_time(
    client: httpx.AsyncClient, make_key: Callable[..., object], queue: Queue
) -> None:
    key = await make_key("super-app", "32.71")  # type: ignore[misc]
    pushed = await client.post("/v1/metrics:batch", json={"points": POINTS}, headers=key)
    assert pushed.json()["recomputes_requested"] == 1
    await asyncio.sleep(0.05)  # the outbox row's age becomes measurable
    text = await scrape(client)
    assert value(text, "cerdas_metrics_source_up", source="database") == 1
    assert value(text, "cerdas_metrics_source_up", source="redis") == 1
    assert value(text, "cerdas_outbox_waiting") == 1  # the push's row, in this test's transaction
    assert value(text, "cerdas_outbox_oldest_age_seconds") > 0
    assert (
        value(text, "cerdas_queue_jobs", state="due") == 1
    )  # enqueued after the commit; no worker
    assert value(text, "cerdas_queue_jobs", state="deferred") == 0


@pytest.fixture
async def unreachable_runtime(runtime: Runtime) -> AsyncIterator[Runtime]:
    """A runtime whose Postgres and Redis are both down (nothing listens on port 1)."""
    settings = runtime.settings.model_copy(
        update={
            "database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/cerdas",
            "redis_url": "redis://127.0.0.1:1/0",
        }
    )
    engine = make_engine(str(settings.database_url), pool_size=1, pool_timeout=0.5)
    down = Runtime(
        settings, engine, make_sessionmaker(engine), Queue.connect(str(settings.redis_url))
    )
    try:
        yield down
    finally:
        await down.close()


async def test_metrics_answers_while_postgres_and_redis_are_down(
    unreachable_runtime: Runtime,
) -> None:
    app = create_app(unreachable_runtime.settings, runtime=unreachable_runtime)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cerdas.test"
        ) as client,
    ):
        assert (await client.get("/readyz")).status_code == 503
        started = time.monotonic()
        text = await scrape(client)
        assert time.monotonic() - started < 5
    assert value(text, "cerdas_metrics_source_up", source="database") == 0
    assert value(text, "cerdas_metrics_source_up", source="redis") == 0
    assert "cerdas_outbox_waiting" not in text
    assert "cerdas_queue_jobs" not in text
    # What the process counted itself is still there.
    assert value(text, "cerdas_http_requests_total", method="GET", route="/readyz", status="503")


@pytest.mark.slow
async def test_a_recompute_by_the_worker_is_counted_and_timed(live: Runtime) -> None:
    async with live.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name="Kemendagri", role="ministry-admin", regions=[])
    key = {"Authorization": f"Bearer {secret}"}
    jobs, durations = "cerdas_recompute_jobs_total", "cerdas_recompute_job_duration_seconds_count"
    async with app_client(live) as client:
        before = await scrape(client)
        async with running_worker(live):
            pushed = await client.post("/v1/metrics:batch", json={"points": POINTS}, headers=key)
            assert pushed.json()["recomputes_requested"] == 1
            deadline = time.monotonic() + 30
            while True:
                after = await scrape(client)
                computed = value(after, jobs, job="assessment", outcome="computed")
                if computed > value(before, jobs, job="assessment", outcome="computed"):
                    break
                assert time.monotonic() < deadline, "the worker did not recompute"
                await asyncio.sleep(0.1)
    assert value(after, durations, job="assessment") > value(before, durations, job="assessment")
    assert value(after, "cerdas_recomputed_assessments_total", outcome="computed") > value(
        before, "cerdas_recomputed_assessments_total", outcome="computed"
    )
    assert value(after, "cerdas_outbox_waiting") == 0  # the recompute cleared its request


async def test_evidence_bytes_are_counted_once_per_new_object(
    client: httpx.AsyncClient, make_key: Callable[..., object], session: AsyncSession
) -> None:
    assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
    session.add(assessment)
    await session.commit()
    key = await make_key("region-operator", "32.71")  # type: ignore[misc]
    content = PDF + f"% {uuid.uuid4()}\n".encode()  # bytes the store has never seen
    before = await scrape(client)

    async def upload(nodes: str) -> None:
        response = await client.post(
            "/v1/evidence",
            headers=key,
            data={"assessment_id": str(assessment.id), "node_ids": nodes},
            files={"file": ("perwali.pdf", content, "application/octet-stream")},
        )
        assert response.status_code == 201, response.text

    await upload("output")
    await upload("outcome")  # the same bytes for another node: a new item, the stored object
    after = await scrape(client)
    stored = "cerdas_evidence_stored_bytes_total"
    assert value(after, stored) - value(before, stored) == len(content)
    objects = "cerdas_evidence_stored_objects_total"
    assert value(after, objects) - value(before, objects) == 1


COUNTING_PROCESS = """
from services.kit import metrics
metrics.mark_dead_on_exit()
metrics.EVIDENCE_STORED_BYTES.inc({amount})
metrics.HTTP_REQUESTS.labels("GET", "/v1/regions", "200").inc()
metrics.HTTP_DURATION.labels("GET", "/v1/regions").observe(0.02)
"""


def test_multiprocess_mode_adds_up_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, MULTIPROC_DIR_ENV: str(tmp_path)}
    for amount in (100, 23):
        subprocess.run(
            [sys.executable, "-c", COUNTING_PROCESS.format(amount=amount)],
            env=env,
            check=True,
            timeout=60,
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    text = exposition().decode()
    assert value(text, "cerdas_evidence_stored_bytes_total") == 123
    assert value(
        text, "cerdas_http_requests_total", method="GET", route="/v1/regions", status="200"
    )
    assert (
        value(text, "cerdas_http_requests_total", method="GET", route="/v1/regions", status="200")
        == 2
    )
    assert (
        value(text, "cerdas_http_request_duration_seconds_count", method="GET", route="/v1/regions")
        == 2
    )
