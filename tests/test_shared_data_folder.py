"""One data folder, many processes: the embedded servers are shared, and stopped only by the
process responsible for them, once nobody else uses them.

Real processes throughout: ``cerdas serve`` and other ``cerdas`` commands as subprocesses, and
:class:`EmbeddedServers` both in this process and in child Python processes. Every test cleans up
whatever outlives it (the servers name or run in the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import redis

from services.kit import embedded
from services.kit.embedded import EmbeddedServerNotReady, EmbeddedServers

pytestmark = pytest.mark.slow

CERDAS = [sys.executable, "-m", "services.cli"]
ROOT = Path(__file__).resolve().parent.parent


# --- helpers ------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[int]:
    """Processes running off ``folder``: postgres names it (-D), redis-server runs in it."""
    marker = str(folder.resolve())
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(proc.cmdline()) or proc.cwd().startswith(marker):
                found.append(proc.pid)
    return found


def kill_leftovers(folder: Path) -> None:
    for pid in leftovers(folder):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not leftovers(folder), 10, "processes on the folder gone")


def kill_group(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until(
    condition: Callable[[], bool],
    seconds: float,
    what: str,
    watched: tuple[subprocess.Popen[bytes], Path] | None = None,
) -> None:
    """Polls ``condition``. ``watched`` is a process and its log: the wait stops as soon as that
    process exits, and either failure shows the end of its log."""

    def log() -> str:
        return "" if watched is None else watched[1].read_text(errors="replace")[-4000:]

    deadline = time.monotonic() + seconds
    while not condition():
        if watched is not None and watched[0].poll() is not None and not condition():
            raise AssertionError(
                f"{what}: the process exited with {watched[0].returncode}\n{log()}"
            )
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s\n{log()}"
        time.sleep(0.1)


def server_pids(folder: Path) -> dict[str, int]:
    """The embedded servers' pids, as recorded in the folder."""
    record = json.loads((folder / "embedded.json").read_text())
    postmaster = (folder / "postgres" / "postmaster.pid").read_text().splitlines()
    return {"postgres": int(postmaster[0]), "redis": int(record["servers"]["redis"]["pid"])}


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def answering(servers: EmbeddedServers) -> bool:
    assert servers.database_url
    assert servers.redis_url
    connection = await asyncpg.connect(
        servers.database_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5
    )
    try:
        assert await connection.fetchval("SELECT 1") == 1
    finally:
        await connection.close()
    client = redis.Redis.from_url(servers.redis_url, socket_timeout=5)
    try:
        return bool(client.ping())
    finally:
        client.close()


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    try:
        yield data
    finally:
        kill_leftovers(data)


# Starts the embedded servers in a child process, says so, and keeps them until stdin closes.
HOLDER = """
import json, sys
from pathlib import Path
from services.kit.embedded import EmbeddedServers
servers = EmbeddedServers(Path(sys.argv[1])).start()
print(json.dumps([servers.database_url, servers.redis_url]), flush=True)
sys.stdin.read()
servers.stop()
"""


def holder(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# --- EmbeddedServers ----------------------------------------------------------------------------


async def test_a_second_user_shares_the_servers_and_never_stops_them(folder: Path) -> None:
    owner = EmbeddedServers(folder).start()
    try:
        pids = server_pids(folder)
        guest = EmbeddedServers(folder).start()
        assert (guest.database_url, guest.redis_url) == (owner.database_url, owner.redis_url)
        assert server_pids(folder) == pids  # nothing new was started
        guest.stop()
        assert all(running(pid) for pid in pids.values())
        assert await answering(owner)
    finally:
        owner.stop()
    assert not any(running(pid) for pid in pids.values())
    assert not (folder / "embedded.json").exists()


async def test_an_owner_leaving_first_hands_the_servers_to_the_remaining_user(
    folder: Path,
) -> None:
    owner = EmbeddedServers(folder).start()
    guest = EmbeddedServers(folder).start()
    try:
        pids = server_pids(folder)
        owner.stop()
        assert all(running(pid) for pid in pids.values())
        assert await answering(guest)
    finally:
        owner.stop()
        guest.stop()
    assert not any(running(pid) for pid in pids.values())


async def test_the_servers_of_a_killed_owner_are_adopted_and_stopped(folder: Path) -> None:
    child = holder(folder)
    try:
        assert child.stdout is not None
        assert json.loads(child.stdout.readline())[1].startswith("unix://")
        pids = server_pids(folder)
        kill_group(child)  # no chance to stop anything: the servers outlive it
        assert all(running(pid) for pid in pids.values())

        adopter = EmbeddedServers(folder).start()
        try:
            assert server_pids(folder) == pids  # adopted, not restarted
            assert await answering(adopter)
        finally:
            adopter.stop()
        assert not any(running(pid) for pid in pids.values())
    finally:
        kill_group(child)


def test_two_processes_starting_at_once_share_one_pair_of_servers(folder: Path) -> None:
    children = [holder(folder), holder(folder)]
    try:
        urls = []
        for child in children:
            assert child.stdout is not None
            urls.append(json.loads(child.stdout.readline()))
        assert urls[0] == urls[1]
        names = {pid: _name(pid) for pid in leftovers(folder)}
        postmasters = [p for p, n in names.items() if n == "postgres" and _parent_name(p) != n]
        assert len(postmasters) == 1
        assert list(names.values()).count("redis-server") == 1
        pids = server_pids(folder)
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            assert child.wait(timeout=60) == 0
        assert not any(running(pid) for pid in pids.values())
    finally:
        for child in children:
            kill_group(child)


class Joiner:
    """``EmbeddedServers(folder).start()`` in a thread: what it got, or what it raised."""

    def __init__(self, folder: Path, **options: Any) -> None:
        self.servers: EmbeddedServers | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(folder, options), daemon=True)
        self.thread.start()

    def _run(self, folder: Path, options: dict[str, Any]) -> None:
        try:
            self.servers = EmbeddedServers(folder, **options).start()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def result(self, seconds: float = 60) -> EmbeddedServers:
        self.thread.join(timeout=seconds)
        assert not self.thread.is_alive(), f"start() did not return within {seconds:.0f} s"
        assert self.error is None, repr(self.error)
        assert self.servers is not None
        return self.servers


def _redis_servers(folder: Path) -> list[int]:
    return [pid for pid in leftovers(folder) if _name(pid) == "redis-server"]


def _postmasters(folder: Path) -> list[int]:
    return [
        p for p in leftovers(folder) if _name(p) == "postgres" and _parent_name(p) != "postgres"
    ]


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _set_postmaster_status(folder: Path, status: str) -> None:
    pid_file = folder / "postgres" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    lines[7] = status.ljust(len(lines[7]))
    pid_file.write_text("\n".join(lines) + "\n")


def test_a_redis_slow_to_answer_is_waited_for_not_replaced(folder: Path) -> None:
    owner = EmbeddedServers(folder).start()
    redis_pid = server_pids(folder)["redis"]
    guest: EmbeddedServers | None = None
    try:
        _signal(redis_pid, signal.SIGSTOP)  # alive, but answers nothing: a very busy server
        try:
            joiner = Joiner(folder)
            time.sleep(4)  # longer than one PING is given
            assert joiner.thread.is_alive(), joiner.error or "start() did not wait"
            assert _redis_servers(folder) == [redis_pid]
        finally:
            _signal(redis_pid, signal.SIGCONT)
        guest = joiner.result()
        assert guest.redis_url == owner.redis_url
        assert server_pids(folder)["redis"] == redis_pid
        assert _redis_servers(folder) == [redis_pid]
        guest.stop()
        assert running(redis_pid)
        client = redis.Redis.from_url(str(owner.redis_url), socket_timeout=5)
        try:
            assert client.ping()  # the owner still connects: its socket was left alone
        finally:
            client.close()
    finally:
        _signal(redis_pid, signal.SIGCONT)
        if guest is not None:
            guest.stop()
        owner.stop()
    assert not running(redis_pid)


def test_a_redis_that_never_answers_fails_start_and_is_left_alone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "READY_TIMEOUT_SECONDS", 3.0)
    owner = EmbeddedServers(folder, want_postgres=False).start()
    redis_pid = server_pids_redis = int(_record(folder)["servers"]["redis"]["pid"])
    try:
        _signal(redis_pid, signal.SIGSTOP)
        try:
            guest = EmbeddedServers(folder, want_postgres=False)
            started = time.monotonic()
            with pytest.raises(EmbeddedServerNotReady) as failure:
                guest.start()
            assert time.monotonic() - started < 15
            message = str(failure.value)
            assert f"pid {redis_pid}" in message
            assert str(folder.resolve()) in message
            assert "\n" not in message
            guest.stop()  # as the command line does: must not touch the server
            assert _redis_servers(folder) == [redis_pid]
            assert Path(str(owner.redis_url).removeprefix("unix://")).is_socket()
        finally:
            _signal(redis_pid, signal.SIGCONT)
        assert int(_record(folder)["servers"]["redis"]["pid"]) == server_pids_redis
        client = redis.Redis.from_url(str(owner.redis_url), socket_timeout=5)
        try:
            assert client.ping()
        finally:
            client.close()
    finally:
        _signal(redis_pid, signal.SIGCONT)
        owner.stop()
    assert not running(redis_pid)


def test_a_postgres_not_yet_ready_is_waited_for_not_taken_over(folder: Path) -> None:
    owner = EmbeddedServers(folder).start()
    pids = server_pids(folder)
    guest: EmbeddedServers | None = None
    try:
        # The postmaster says it is still starting up (as after a crash restart) and is slow.
        _set_postmaster_status(folder, "starting")
        _signal(pids["postgres"], signal.SIGSTOP)
        try:
            joiner = Joiner(folder)
            time.sleep(3)
            assert joiner.thread.is_alive(), joiner.error or "start() did not wait"
            assert _postmasters(folder) == [pids["postgres"]]
        finally:
            _signal(pids["postgres"], signal.SIGCONT)
            _set_postmaster_status(folder, "ready")
        guest = joiner.result()
        assert guest.database_url == owner.database_url
        assert server_pids(folder) == pids
        assert _postmasters(folder) == [pids["postgres"]]
        assert _record(folder)["servers"]["postgres"]["owner"] == owner._token  # not taken over
        guest.stop()
        assert running(pids["postgres"])
    finally:
        _signal(pids["postgres"], signal.SIGCONT)
        if guest is not None:
            guest.stop()
        owner.stop()
    assert not any(running(pid) for pid in pids.values())


def test_a_postgres_that_never_gets_ready_fails_start_and_is_left_alone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "READY_TIMEOUT_SECONDS", 3.0)
    owner = EmbeddedServers(folder, want_redis=False).start()
    postmaster = server_pids_postgres = _postmasters(folder)[0]
    try:
        _set_postmaster_status(folder, "starting")
        try:
            guest = EmbeddedServers(folder, want_redis=False)
            with pytest.raises(EmbeddedServerNotReady) as failure:
                guest.start()
            assert f"pid {postmaster}" in str(failure.value)
            guest.stop()
            assert _postmasters(folder) == [server_pids_postgres]
        finally:
            _set_postmaster_status(folder, "ready")
    finally:
        owner.stop()
    assert not running(postmaster)


def _record(folder: Path) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads((folder / "embedded.json").read_text())
    except (OSError, ValueError):
        return {"servers": {}, "users": {}}
    return record


def _name(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return str(psutil.Process(pid).name())
    return ""


def _parent_name(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return _name(psutil.Process(pid).ppid())
    return ""


# --- the command line ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(folder: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERDAS_", "DATABASE_URL", "REDIS_URL", "PORT"))
    }
    env.update(CERDAS_DATA_DIR=str(folder), PORT=str(port), CERDAS_LOG_LEVEL="warning")
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CERDAS, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_other_commands_and_a_second_serve_leave_a_running_serve_alone(
    folder: Path, tmp_path: Path
) -> None:
    port = _free_port()
    env = _env(folder, port)
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [*CERDAS, "serve"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def ready() -> bool:
        answer = httpx.get(f"{base}/readyz", timeout=5)
        assert answer.status_code == 200, answer.text
        checks = answer.json()["checks"]
        assert checks["worker"] == "ok", checks
        return True

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        with contextlib.suppress(httpx.TransportError, AssertionError):
            return ready()
        return False

    try:
        wait_until(up, 120, "cerdas serve ready")
        pids = server_pids(folder)

        created = _cli(env, "keys", "create", "--role", "ministry-admin", "--name", "x")
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[0]
        assert ready()
        recomputed = _cli(env, "recompute", "--all")
        assert recomputed.returncode == 0, recomputed.stderr
        assert ready()
        demo = _cli(env, "demo")
        assert demo.returncode == 0, demo.stderr
        assert ready()
        assert "using the embedded servers running in" in demo.stderr
        assert server_pids(folder) == pids  # the same servers throughout, never restarted

        # The key made by another process works here, and the in-process worker still runs jobs.
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{base}/v1/audit", headers=auth, timeout=10).status_code == 200
        job = httpx.post(f"{base}/v1/recompute-runs", json={}, headers=auth, timeout=10)
        assert job.status_code == 202, job.text
        job_url = f"{base}/v1/jobs/{job.json()['id']}"

        def job_done() -> bool:
            state = httpx.get(job_url, headers=auth, timeout=10).json()
            assert state["state"] != "failed", state
            return bool(state["state"] == "done")

        wait_until(job_done, 60, "the recompute run done by the in-process worker")

        second = _cli(_env(folder, _free_port()), "serve")
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert lines == [
            f"cerdas: a server is already running on this data folder (pid {server.pid}, "
            f"http://127.0.0.1:{port}); stop it first or set CERDAS_DATA_DIR"
        ], second.stderr
        assert ready()
        assert server_pids(folder) == pids

        server.terminate()
        assert server.wait(timeout=60) == 0
        # The owner stopped its servers on the way out.
        assert not any(running(pid) for pid in pids.values())
    finally:
        kill_group(server)
        log.close()


def test_a_serve_that_joined_later_keeps_the_servers_when_their_starter_leaves(
    folder: Path, tmp_path: Path
) -> None:
    port = _free_port()
    env = _env(folder, port)
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []

    def launch(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{args[0]}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*CERDAS, *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    def owner_pid() -> int:
        record = _record(folder)
        owners = {entry["owner"] for entry in record["servers"].values()}
        assert len(owners) == 1, record
        return int(record["users"][owners.pop()]["pid"])

    def ready() -> bool:
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{base}/readyz", timeout=5)
            return answer.status_code == 200 and answer.json()["checks"]["worker"] == "ok"
        return False

    try:
        worker = launch("worker")  # a standalone worker starts the folder's servers first
        wait_until(
            lambda: len(_record(folder)["servers"]) == 2,
            120,
            "the worker's servers",
            (worker, tmp_path / "worker.log"),
        )
        assert owner_pid() == worker.pid
        server = launch("serve")
        wait_until(ready, 120, "cerdas serve ready", (server, tmp_path / "serve.log"))
        pids = server_pids(folder)
        assert "using the embedded servers running in" in (tmp_path / "serve.log").read_text()

        worker.terminate()
        assert worker.wait(timeout=60) == 0
        assert all(running(pid) for pid in pids.values())
        # Still serving, on the same servers (its in-process worker may be between two polls
        # on a loaded machine, so readiness is awaited rather than sampled once).
        wait_until(ready, 30, "cerdas serve still ready after the worker left")
        assert server_pids(folder) == pids
        assert owner_pid() == server.pid  # handed over, not stopped

        server.terminate()
        assert server.wait(timeout=60) == 0
        assert not any(running(pid) for pid in pids.values())
    finally:
        for process in processes:
            kill_group(process)
