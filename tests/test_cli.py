"""The command line as a user meets it: settings errors, and `cerdas serve` end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.kit.queue import Queue
from services.kit.settings import Settings

CERDAS = [sys.executable, "-m", "services.cli"]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CERDAS, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERDAS_", "DATABASE_URL", "REDIS_URL", "PORT"))
    }
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "nonsense"), ("REDIS_URL", "http://example"), ("PORT", "eighty")],
)
def test_bad_settings_fail_with_one_line_naming_the_variable(variable: str, value: str) -> None:
    result = run_cli("migrate", env=clean_env(**{variable: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cerdas: invalid setting {variable}:")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_answers_health_docs_and_regions_with_an_in_process_worker(
    settings: Settings, queue: Queue, tmp_path: Path
) -> None:
    port = _free_port()
    env = clean_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        PORT=str(port),
        CERDAS_DATA_DIR=str(tmp_path),
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
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        assert httpx.get(f"{base}/docs").status_code == 200
        regions = httpx.get(f"{base}/v1/regions", params={"limit": 1000}).json()
        assert len(regions["items"]) == 552
        # A configured DATABASE_URL is somebody's real database: no demo data unless asked.
        assert httpx.get(f"{base}/v1/assessments").json()["items"] == []
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Starting worker" in output, "the in-process worker did not start"
