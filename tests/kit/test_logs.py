"""CERDAS_LOG_FORMAT=json: one parseable JSON object per line, carrying the request id."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.kit.logs import JsonFormatter
from services.kit.queue import Queue
from services.kit.requests import RequestIdMiddleware, current_request_id
from services.kit.settings import Settings
from tests.test_cli import CERDAS, _free_port, clean_env

log = logging.getLogger("cerdas.test")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the test logger writes, through the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.removeHandler(handler)


async def test_json_lines_carry_the_request_id_and_the_exception(json_lines: io.StringIO) -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        log.info("serving\nwith a second line")
        try:
            raise ValueError("bad input")
        except ValueError:
            log.exception("it failed")
        return PlainTextResponse("ok")

    app = RequestIdMiddleware(Starlette(routes=[Route("/", endpoint)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cerdas.test") as client:
        response = await client.get("/", headers={"X-Request-ID": "req-7f3a"})
    assert response.headers["x-request-id"] == "req-7f3a"
    log.info("outside any request")

    lines = json_lines.getvalue().splitlines()
    assert len(lines) == 3  # one line per record, whatever the message holds
    served, failed, outside = (json.loads(line) for line in lines)
    assert served["message"] == "serving\nwith a second line"
    assert (served["level"], served["logger"], served["request_id"]) == (
        "INFO",
        "cerdas.test",
        "req-7f3a",
    )
    assert served["timestamp"].endswith("Z")
    assert "exception" not in served
    assert (failed["level"], failed["request_id"]) == ("ERROR", "req-7f3a")
    assert "ValueError: bad input" in failed["exception"]
    assert outside["request_id"] is None
    assert current_request_id() is None


@pytest.mark.slow
def test_serve_writes_json_lines_with_the_request_id(
    settings: Settings, queue: Queue, tmp_path: Path
) -> None:
    port = _free_port()
    env = clean_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        PORT=str(port),
        CERDAS_DATA_DIR=str(tmp_path),
        CERDAS_LOG_FORMAT="json",
    )
    server = subprocess.Popen(
        [*CERDAS, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "cerdas serve exited early"
            assert time.monotonic() < deadline, "cerdas serve did not come up"
            time.sleep(0.2)
        answer = httpx.get(f"{base}/v1/regions/32.71", headers={"X-Request-ID": "probe-42"})
        assert answer.status_code == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {"timestamp", "level", "logger", "message", "request_id"} <= set(records[0])
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "uvicorn.access", "services.main"} <= loggers, loggers
    [access] = [r for r in records if r["request_id"] == "probe-42"]
    assert access["logger"] == "uvicorn.access"
    assert access["http"] == {
        "method": "GET",
        "path": "/v1/regions/32.71",
        "status": 200,
        "client": access["http"]["client"],
    }


@pytest.mark.slow
def test_a_standalone_worker_serves_its_metrics_on_a_port_of_its_own(
    settings: Settings, queue: Queue, tmp_path: Path
) -> None:
    """`cerdas worker` has no HTTP API; with a metrics port it is scraped like the services."""
    port = _free_port()
    env = clean_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        CERDAS_DATA_DIR=str(tmp_path),
        CERDAS_WORKER_METRICS_PORT=str(port),
    )
    worker = subprocess.Popen(
        [*CERDAS, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert worker.poll() is None, "cerdas worker exited early"
                assert time.monotonic() < deadline, "no metrics port within 30 s"
                time.sleep(0.2)
        assert scraped.status_code == 200
        assert "# TYPE cerdas_recompute_jobs_total counter" in scraped.text
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
