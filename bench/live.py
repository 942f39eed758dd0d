"""S2 and S3 of issue 19: freshness and reads while super-apps push (`make bench-scale`).

    S2 freshness  50 super-app clients, each owning a kabupaten/kota, push a month's batch of
                  metrics (integrated apps and their target, users, transactions of eight
                  services, complaints resolved) and wait until the recomputed result of their
                  region (Cerdas's linked index, which the metrics feed) is readable through
                  the API. p99 of push → readable ÷ p99 of enqueue → no-op job done (arq's
                  ``ping`` on the server's own worker), measured at the same time       ≤ 3
    S3 reads      while S2 runs: requests/s of the national ranking, a summary and the
                  dashboard (anonymous, 8 connections) ÷ a bare ASGI app returning the same
                  bytes per path under uvicorn, measured under the same pushes          ≥ 0.9
                  Also the ranking's latency on a cache miss (the version bumped before each
                  read) and on a hit, with no pushes running.

Measured twice: on the production shape (``cerdas serve gateway``, ``cerdas serve ingest`` and
``cerdas worker``, three processes: S2 and S3, with the targets) and on ``cerdas serve`` (all of
them in one process with an in-process worker, as Scale.serve starts it: S2_all_in_one and
S3_all_in_one, figures only). Load generators run in processes of their own
(``python -m bench.live push|read CONFIG``), each printing one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.run import PYTHON, free_port, quantile, wait_http, wait_job
from services.kit.queue import Queue

PUSHERS = 50
READERS = 8
POLL_S = 0.005  # the pause between two looks at the pushed regions' stored results
FRESH_SQL = """
    SELECT a.region_code FROM assessment a JOIN result_state s ON s.assessment_id = a.id
    WHERE a.framework_id = $1 AND a.period = $2 AND a.region_code = ANY($3)
      AND s.input_revision = a.input_revision
"""
LINKED = "smartcity-spbe-linked"  # the framework the pushed metrics feed
SERVICES = (  # the catalogue's services with a transactions metric (bench.scale loads them too)
    "adminduk",
    "kartu-kuning",
    "ppdb-online",
    "ambulans",
    "perizinan",
    "pengaduan",
    "pajak-daerah",
    "kesehatan",
)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cache_reads(url: str) -> dict[str, float]:
    """The results cache's reads by outcome, from the server's /metrics (empty if it has none)."""
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"{url}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cerdas_results_cache_reads_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels.split('outcome="')[1].split('"')[0]] = float(value)
    return counts


def batch(region: str, period: int, n: int) -> dict[str, Any]:
    """A super-app's monthly push: every push integrates one more app, so each changes the
    linked index's metric leaf and asks for a recompute."""
    month = f"{period}-11"
    points: list[dict[str, Any]] = [
        {"region": region, "metric": "integrated_apps", "period": month, "value": 100 + n},
        {"region": region, "metric": "integrated_apps_target", "period": month, "value": 10_000},
        {"region": region, "metric": "active_users", "period": month, "value": 5_000 + 7 * n},
        {
            "region": region,
            "metric": "complaints_resolved_ratio",
            "period": month,
            "value": f"0.{(50 + n) % 100:02d}",
        },
    ]
    points += [
        {
            "region": region,
            "metric": "service_transactions",
            "period": month,
            "value": 1_000 + 13 * n + i,
            "dimensions": {"service": service},
        }
        for i, service in enumerate(SERVICES)
    ]
    return {"points": points}


# -- the load generators (processes of their own) -------------------------------------------


async def push(config: dict[str, Any]) -> None:
    """S2: each client pushes and waits for its fresh result, over and over; beside them one
    probe enqueues no-op jobs and waits for each. Prints "ready" once every region has its
    linked assessment (the first push creates it), then one JSON line at the end."""
    headers = {"Authorization": f"Bearer {config['key']}"}
    # Idle connections are dropped after 2 s, before the servers' own keep-alive timeout (5 s)
    # closes them: at equal timeouts a push could be sent on a connection being closed.
    limits = httpx.Limits(
        max_connections=PUSHERS + 10, max_keepalive_connections=PUSHERS + 10, keepalive_expiry=2
    )
    period = config["period"]
    latencies: list[float] = []
    posts: list[float] = []  # the push's own answer
    stored: list[float] = []  # until the stored result was seen fresh in Postgres
    noops: list[float] = []
    late = 0
    busy = 0  # pushes answered 503 (no free connection) and sent again
    reconnects = 0  # confirmations sent again on a fresh connection

    # A hint, straight from Postgres: when each pushed region's stored result was last seen at
    # its assessment's input revision. A client then confirms through the API, so the time
    # measured is until the API answers fresh; 50 clients polling the API on their own would
    # be most of the load they measure.
    fresh_at: dict[str, float] = {}  # region → start of the last observation seeing it fresh
    observed = asyncio.Event()
    stop = False

    async def observe() -> None:
        connection = await asyncpg.connect(config["dsn"])
        try:
            while not stop:
                started = time.perf_counter()
                for row in await connection.fetch(FRESH_SQL, LINKED, period, config["regions"]):
                    fresh_at[row[0]] = started
                observed.set()
                observed.clear()
                await asyncio.sleep(POLL_S)
        finally:
            await connection.close()

    async def fresh(client: httpx.AsyncClient, region: str) -> bool:
        nonlocal reconnects
        params = {"framework": LINKED, "region": region, "period": period}
        try:
            response = await client.get("/v1/assessments", params=params)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # A keep-alive connection the server closed (idle past its keep-alive timeout
            # while the client waited for its result) just as it was reused: ask again.
            reconnects += 1
            response = await client.get("/v1/assessments", params=params)
        page = response.json()
        item = page["items"][0] if page["items"] else None
        result = item and item["result"]
        return bool(result and result["input_revision"] == item["input_revision"])

    async def push_once(client: httpx.AsyncClient, region: str, n: int) -> float:
        """Push, then wait until the API answers with the region's result at the revision the
        push made (asking once the hint has seen it, after the push was answered)."""
        nonlocal late
        nonlocal busy
        started = time.perf_counter()
        while True:
            response = await client.post(
                f"{config['ingest_url']}/v1/metrics:batch", json=batch(region, period, n)
            )
            # 503 "busy" (no free database connection: nothing was stored) asks the client to
            # retry after Retry-After, as a super-app would; the wait counts in the latency.
            if response.status_code != 503 or time.perf_counter() - started > 60:
                break
            busy += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        assert response.status_code == 200, response.text
        answered = time.perf_counter()
        if n:
            posts.append(answered - started)
        while True:
            if fresh_at.get(region, 0.0) >= answered:
                hinted = time.perf_counter()
                if await fresh(client, region):
                    if n:
                        stored.append(hinted - started)
                    break
            if time.perf_counter() - started > 60:
                late += 1
                break
            await observed.wait()
        return time.perf_counter() - started

    async with httpx.AsyncClient(
        base_url=config["url"], headers=headers, timeout=120, limits=limits
    ) as client:
        observer = asyncio.create_task(observe())
        await asyncio.gather(*(push_once(client, r, 0) for r in config["regions"]))
        print("ready", flush=True)
        stop_at = time.perf_counter() + config["seconds"]

        async def pusher(region: str) -> None:
            n = 1
            while time.perf_counter() < stop_at:
                latencies.append(await push_once(client, region, n))
                n += 1

        async def probe() -> None:
            queue = Queue.connect(config["redis_url"])
            try:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    job = await queue.redis.enqueue_job("ping")
                    assert job is not None
                    await wait_job(job)
                    noops.append(time.perf_counter() - started)
            finally:
                await queue.close()

        started = time.perf_counter()
        await asyncio.gather(probe(), *(pusher(r) for r in config["regions"]))
        elapsed = time.perf_counter() - started
        stop = True
        await observer
    print(
        json.dumps(
            {
                "push_p50_ms": quantile(latencies, 0.5) * 1000,
                "push_p99_ms": quantile(latencies, 0.99) * 1000,
                "push_max_ms": max(latencies) * 1000,
                "answer_p50_ms": quantile(posts, 0.5) * 1000,
                "answer_p99_ms": quantile(posts, 0.99) * 1000,
                "stored_p50_ms": quantile(stored, 0.5) * 1000,
                "stored_p99_ms": quantile(stored, 0.99) * 1000,
                "noop_p50_ms": quantile(noops, 0.5) * 1000,
                "noop_p99_ms": quantile(noops, 0.99) * 1000,
                "pushes": len(latencies),
                "noops": len(noops),
                "late": late,
                "busy_retries": busy,
                "reconnects": reconnects,
                "seconds": elapsed,
                "points_per_push": len(batch("", period, 0)["points"]),
            }
        )
    )


async def read(config: dict[str, Any]) -> None:
    """S3: READERS connections cycling over the paths for ``seconds``, anonymous."""
    paths: list[str] = config["paths"]
    timings: list[float] = []
    failed = 0
    deadline = time.perf_counter() + config["seconds"]
    limits = httpx.Limits(max_connections=READERS, max_keepalive_connections=READERS)

    async def reader(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal failed
        index = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(paths[index % len(paths)])
            timings.append(time.perf_counter() - started)
            index += 1
            failed += response.status_code != 200

    async with httpx.AsyncClient(base_url=config["url"], timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(reader(client, n) for n in range(READERS)))
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "requests": len(timings) - failed,
                "failed": failed,
                "seconds": elapsed,
                "rps": (len(timings) - failed) / elapsed,
                "p50_ms": quantile(timings, 0.5) * 1000,
                "p99_ms": quantile(timings, 0.99) * 1000,
            }
        )
    )


# -- the measurement (the bench process) ----------------------------------------------------


class Live:
    """S2 and S3 against a running ``cerdas serve`` at ``url`` (:meth:`run`), or against the
    production shape started here: ``cerdas serve gateway``, ``cerdas serve ingest`` and
    ``cerdas worker``, each a process of its own (:meth:`run_split`)."""

    def __init__(
        self,
        url: str,
        key: str,
        regions: list[str],
        *,
        dsn: str,
        redis_url: str,
        folder: Path,
        env: dict[str, str],
        period: int,
        framework: str = "gmsc-2023",
    ) -> None:
        self.url, self.key, self.dsn, self.redis_url = url, key, dsn, redis_url
        self.folder, self.env, self.period, self.framework = folder, env, period, framework
        step = max(1, len(regions) // PUSHERS)
        self.pushing = regions[::step][:PUSHERS]  # spread over the country
        self.reading = next(r for r in regions if r not in self.pushing)
        # The process serving the reads (all in one, or the gateway): its CPU time is taken
        # over each read window, and py-spy records it in Cerdas's window when BENCH_SPY_S3
        # names a file.
        self.server_pid: int | None = None

    async def run_split(self, seconds: float) -> dict[str, Any]:
        """The same on the production shape: pushes go to ingest, reads to the gateway, and
        recomputes and no-op jobs to the worker."""
        gateway_port, ingest_port = free_port(), free_port()
        commands = [
            (["serve", "gateway"], {"PORT": str(gateway_port)}),
            (["serve", "ingest"], {"PORT": str(ingest_port)}),
            (["worker"], {}),
        ]
        processes = [
            subprocess.Popen(
                [PYTHON, "-m", "services.cli", *command],
                env={**self.env, **extra},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for command, extra in commands
        ]
        try:
            gateway = f"http://127.0.0.1:{gateway_port}"
            ingest = f"http://127.0.0.1:{ingest_port}"
            wait_http(f"{gateway}/healthz")
            wait_http(f"{ingest}/healthz")
            self.server_pid = processes[0].pid
            return await self.run(seconds, gateway=gateway, ingest=ingest)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)

    async def run(
        self, seconds: float, *, gateway: str | None = None, ingest: str | None = None
    ) -> dict[str, Any]:
        """S2 and S3; ``gateway`` and ``ingest`` default to the all-in-one server's URL."""
        self.gateway = gateway or self.url
        self.ingest = ingest or self.url
        paths = await self.read_paths()
        bodies = {}
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as client:
            for n, path in enumerate(paths):
                response = await client.get(path)
                assert response.status_code == 200, response.text
                bodies[path] = self.folder / f"live-body-{n}.json"
                bodies[path].write_bytes(response.content)
        port = free_port()
        bare = subprocess.Popen(
            [
                *(PYTHON, "-m", "uvicorn", "bench.bare:app"),
                *("--port", str(port), "--log-level", "warning"),
            ],
            env={
                **self.env,
                "BENCH_BODY_FILE": str(bodies[paths[0]]),
                "BENCH_BODIES": json.dumps({p: str(f) for p, f in bodies.items()}),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bare_url = f"http://127.0.0.1:{port}"
            wait_http(bare_url)
            s2, s3 = await self.under_pushes(seconds, paths, bare_url)
        finally:
            bare.terminate()
            bare.wait(timeout=30)
        s3.update(await self.ranking_latency(paths[0]))
        s3["bytes"] = {path: file.stat().st_size for path, file in bodies.items()}
        return {"S2": s2, "S3": s3}

    async def read_paths(self) -> list[str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.gateway, headers=headers, timeout=30) as client:
            page = (
                await client.get(
                    "/v1/assessments",
                    params={
                        "framework": self.framework,
                        "region": self.reading,
                        "period": self.period,
                    },
                )
            ).json()
        query = f"framework={self.framework}&period={self.period}"
        return [
            f"/v1/rankings?{query}",
            f"/v1/assessments/{page['items'][0]['id']}/summary",
            f"/v1/dashboard?{query}",
        ]

    async def under_pushes(
        self, seconds: float, paths: list[str], bare_url: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The pushes for ``seconds``; inside them, reads of Cerdas then of the bare app, each
        for a little under half the time."""
        config = {
            "url": self.gateway,
            "ingest_url": self.ingest,
            "key": self.key,
            "dsn": self.dsn,
            "redis_url": self.redis_url,
            "regions": self.pushing,
            "period": self.period,
            "seconds": seconds,
        }
        pushes = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "bench.live",
            "push",
            json.dumps(config),
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
        )
        assert pushes.stdout is not None
        ready = await pushes.stdout.readline()
        assert ready.strip() == b"ready", ready
        window = max(1.0, (seconds - 2) / 2)
        await asyncio.sleep(0.5)
        reads = {}
        cpu: dict[str, float | None] = {}
        profile: dict[str, Any] | None = None
        outcomes: dict[str, float] = {}
        for name, target in (("cerdas", self.gateway), ("bare", bare_url)):
            spy = None
            if name == "cerdas" and os.environ.get("BENCH_SPY_S3") and self.server_pid:
                from bench.scale import Spy  # bench.scale imports this module

                spy = Spy(Path(os.environ["BENCH_SPY_S3"]), self.server_pid)
            counted = await cache_reads(self.gateway) if name == "cerdas" else {}
            before = cpu_seconds(self.server_pid)
            reads[name] = await self.read_window(target, paths, window)
            after = cpu_seconds(self.server_pid)
            if name == "cerdas":
                now = await cache_reads(self.gateway)
                outcomes = {k: v - counted.get(k, 0.0) for k, v in now.items()}
            cpu[name] = None if before is None or after is None else after - before
            if spy is not None:
                profile = spy.stop()
            assert reads[name]["failed"] == 0, reads[name]
        out, _ = await pushes.communicate()
        assert pushes.returncode == 0
        s2 = json.loads(out.decode().strip().splitlines()[-1])
        s2 = {"ratio": s2["push_p99_ms"] / s2["noop_p99_ms"], "clients": PUSHERS, **s2}
        s2["poll_ms"] = POLL_S * 1000
        s3 = {
            "ratio": reads["cerdas"]["rps"] / reads["bare"]["rps"],
            "cerdas_rps": reads["cerdas"]["rps"],
            "bare_rps": reads["bare"]["rps"],
            "cerdas_p50_ms": reads["cerdas"]["p50_ms"],
            "cerdas_p99_ms": reads["cerdas"]["p99_ms"],
            "bare_p50_ms": reads["bare"]["p50_ms"],
            "bare_p99_ms": reads["bare"]["p99_ms"],
            "window_s": window,
            "concurrency": READERS,
            "paths": paths,
        }
        # The server's CPU time in each window: in the bare app's it serves only the pushers'
        # own reads, so the difference over Cerdas's reads is what one anonymous read costs
        # (the pushes keep going through both windows; an estimate, not an exact share).
        cerdas_cpu, bare_cpu = cpu["cerdas"], cpu["bare"]
        if cerdas_cpu is not None and bare_cpu is not None:
            s3["server_cpu_s"] = {"cerdas_window": cerdas_cpu, "bare_window": bare_cpu}
            s3["server_cpu_per_read_us"] = (
                (cerdas_cpu - bare_cpu) / max(1, reads["cerdas"]["requests"]) * 1e6
            )
        if profile is not None:
            s3["profile"] = profile
        if outcomes:  # the gateway's results cache in Cerdas's window (all readers together)
            s3["cache_reads"] = outcomes
        return s2, s3

    async def read_window(self, url: str, paths: list[str], seconds: float) -> dict[str, Any]:
        config = {"url": url, "paths": paths, "seconds": seconds}
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "bench.live",
            "read",
            json.dumps(config),
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        result: dict[str, Any] = json.loads(out)
        return result

    async def ranking_latency(self, path: str, samples: int = 100) -> dict[str, Any]:
        """The national ranking on a miss (the version bumped, with its notification, before
        each read) and on a hit (the same read again), with no pushes running."""
        misses, hits = [], []
        connection = await asyncpg.connect(self.dsn)
        try:
            async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as client:
                for n in range(samples + 5):
                    await connection.execute(
                        "SELECT pg_notify('results_version', nextval('results_version')::text)"
                    )
                    await asyncio.sleep(0.05)  # heard by the server's listener by now
                    started = time.perf_counter()
                    miss = await client.get(path)
                    took = time.perf_counter() - started
                    started = time.perf_counter()
                    hit = await client.get(path)
                    again = time.perf_counter() - started
                    assert miss.status_code == hit.status_code == 200
                    if n >= 5:
                        misses.append(took)
                        hits.append(again)
        finally:
            await connection.close()
        return {
            "ranking_miss_p50_ms": quantile(misses, 0.5) * 1000,
            "ranking_miss_p99_ms": quantile(misses, 0.99) * 1000,
            "ranking_hit_p50_ms": quantile(hits, 0.5) * 1000,
            "ranking_hit_p99_ms": quantile(hits, 0.99) * 1000,
            "ranking_samples": samples,
        }


if __name__ == "__main__":
    mode, raw = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(push(raw) if mode == "push" else read(raw))
