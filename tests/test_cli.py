"""The command line as a user meets it: settings errors, and `cerdas serve` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.kit.queue import Queue
from services.kit.runtime import Runtime
from services.kit.settings import Settings
from services.models import AuditEvent
from tests.conftest import app_client

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


def test_demo_into_a_configured_database_asks_for_yes(settings: Settings) -> None:
    # The seed cases are published figures of real regions: never loaded into a live database
    # by accident.
    env = clean_env(DATABASE_URL=str(settings.database_url), REDIS_URL=str(settings.redis_url))
    refused = run_cli("demo", env=env)
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert refused.stderr.strip().count("\n") == 0  # one line


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


# `cerdas keys`: create, list, rotate, revoke against the suite's database (committed, so the
# `live` fixture truncates afterwards).


def keys_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        CERDAS_DATA_DIR=str(tmp_path),
    )


async def cerdas(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env)


async def whoami(live: Runtime, secret: str) -> httpx.Response:
    async with app_client(live) as client:
        return await client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cerdas: ")
    return lines[0]


@pytest.mark.slow
async def test_keys_create_list_rotate_revoke(
    live: Runtime, settings: Settings, tmp_path: Path
) -> None:
    env = keys_env(settings, tmp_path)

    # create: the secret alone on stdout, the id on stderr's one line.
    made = await cerdas(env, "keys", "create", "--role", "ministry-admin", "--name", "KemenPANRB")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n"
    assert secret.startswith("cerdas_")
    admin_id = (await whoami(live, secret)).json()["id"]
    assert made.stderr.strip() == (
        f"cerdas: created ministry-admin key {admin_id} ('KemenPANRB'); "
        "the secret is shown only this once"
    )

    # create --json: one object with the id and the secret.
    made = await cerdas(
        env, "keys", "create", "--role", "super-app", "--name", "Bogor SW", "--region", "32.71",
        "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key_id, first_secret = created["id"], created["secret"]
    assert created == {
        "id": key_id,
        "name": "Bogor SW",
        "role": "super-app",
        "regions": ["32.71"],
        "prefix": first_secret[:13],
        "secret": first_secret,
    }
    assert key_id in made.stderr
    assert (await whoami(live, first_secret)).json()["id"] == key_id

    # list: a table, and JSON for scripts; never a secret.
    table = await cerdas(env, "keys", "list")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "REGIONS", "PREFIX", "CREATED", "REVOKED"]
    assert {line.split()[0] for line in lines} == {admin_id, key_id}
    listed = json.loads((await cerdas(env, "keys", "list", "--json")).stdout)
    mine = next(item for item in listed if item["id"] == key_id)
    assert mine["role"] == "super-app"
    assert mine["regions"] == ["32.71"]
    assert mine["revoked_at"] is None
    assert mine["created_at"]
    assert first_secret not in table.stdout + json.dumps(listed)

    # rotate: same key, new secret; the old one is refused at once.
    rotated = await cerdas(env, "keys", "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    assert new_secret != first_secret
    assert new_secret.startswith("cerdas_")
    assert f"rotated super-app key {key_id}" in rotated.stderr
    assert (await whoami(live, first_secret)).status_code == 401
    me = (await whoami(live, new_secret)).json()
    assert (me["id"], me["role"], me["regions"]) == (key_id, "super-app", ["32.71"])

    # revoke: refused at once; revoking again changes nothing.
    revoked = await cerdas(env, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stderr.startswith(f"cerdas: super-app key {key_id} ('Bogor SW' for 32.71)")
    assert (await whoami(live, new_secret)).status_code == 401
    assert (await cerdas(env, "keys", "revoke", key_id)).returncode == 0
    listed = json.loads((await cerdas(env, "keys", "list", "--json")).stdout)
    assert next(item for item in listed if item["id"] == key_id)["revoked_at"]

    # Unknown, malformed or revoked ids: one line, exit 2.
    unknown = str(uuid.uuid4())
    assert one_error_line(await cerdas(env, "keys", "revoke", unknown)) == (
        f"cerdas: No API key {unknown}."
    )
    assert unknown in one_error_line(await cerdas(env, "keys", "rotate", unknown))
    assert "not a key id" in one_error_line(await cerdas(env, "keys", "revoke", "nonsense"))
    assert "is revoked" in one_error_line(await cerdas(env, "keys", "rotate", key_id))
    bad_region = await cerdas(
        env, "keys", "create", "--role", "super-app", "--name", "x", "--region", "99.99"
    )
    assert "unknown region '99.99'" in one_error_line(bad_region)

    # Audited: the operator, one request id per command.
    async with live.sessionmaker() as session:
        rows = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.entity == "api_key").order_by(AuditEvent.id)
            )
        ).all()
    assert [(row.action, row.entity_id) for row in rows] == [
        ("api_key.create", admin_id),
        ("api_key.create", key_id),
        ("api_key.rotate", key_id),
        ("api_key.revoke", key_id),
    ]
    assert {row.actor_name for row in rows} == {"cerdas keys (CLI)"}
    assert {row.actor_id for row in rows} == {None}
    assert {row.role for row in rows} == {"ministry-admin"}
    request_ids = [row.request_id or "" for row in rows]
    assert all(re.fullmatch(r"cli-[0-9a-f]{32}", rid) for rid in request_ids), request_ids
    assert len(set(request_ids)) == 4
