"""`make bench`: Cerdas against the limits of this machine, each figure a ratio to a baseline
measured in the same run (absolute timings on shared machines drift; ratios much less).

    P1 ingest     HTTP batch points/s  ÷ raw asyncpg COPY rows/s into the same table   ≥ 0.5
    P2 recompute  national recompute s ÷ one pure-SQL weighted aggregate s              ≤ 2
    P3 freshness  push → result readable p50 ÷ enqueue → no-op job done p50            ≤ 2
    P4 reads      ranking/summary req/s ÷ a bare ASGI app serving the same bytes        ≥ 0.7
    P5 memory     recompute peak RSS at 514 regions ÷ at 50 regions                    1 ± 0.1

Everything runs on embedded servers in a temporary folder. Writes bench-report.json and prints
a table. Clients run in separate processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from arq.jobs import Job
from sqlalchemy import insert, select

from services.domain.access.principal import operator_context
from services.domain.access.service import create_key
from services.domain.recompute.service import create_run
from services.ingest.metric.validation import STAGED_COLUMNS
from services.kit.embedded import EmbeddedServers
from services.kit.runtime import Runtime
from services.kit.settings import Settings
from services.main import prepare_database
from services.models import Assessment, AssessmentInput, Region
from services.scoring.frameworks import get_framework
from services.scoring.service import run_step

PYTHON = sys.executable
REPORT = Path("bench-report.json")
TARGETS = {
    "P1": (">=", 0.5),
    "P2": ("<=", 2.0),
    "P3": ("<=", 2.0),
    "P4": (">=", 0.7),
    "P5": ("within", 0.1),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Bench:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cerdas-bench-"))
        self.servers = EmbeddedServers(self.folder / "data").start()
        assert self.servers.database_url
        assert self.servers.redis_url
        self.settings = Settings(
            DATABASE_URL=self.servers.database_url,
            REDIS_URL=self.servers.redis_url,
            data_dir=self.folder / "data",
            log_level="warning",
            rate_limit_per_minute=10**9,
            anonymous_rate_limit_per_minute=10**9,
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERDAS_")}
        self.env.update(
            DATABASE_URL=self.servers.database_url,
            REDIS_URL=self.servers.redis_url,
            CERDAS_DATA_DIR=str(self.folder / "data"),
            CERDAS_LOG_LEVEL="warning",
            # Limits far above the load: every request still pays for its count in Redis, but
            # the bench measures capacity, not the throttle.
            CERDAS_RATE_LIMIT_PER_MINUTE=str(10**9),
            CERDAS_ANONYMOUS_RATE_LIMIT_PER_MINUTE=str(10**9),
        )
        self.dsn = self.servers.database_url.replace("postgresql+asyncpg://", "postgresql://")
        self.results: dict[str, Any] = {}

    def close(self) -> None:
        self.servers.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def serve(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        process = subprocess.Popen(
            [PYTHON, "-m", "services.cli", "serve", "--no-demo"],
            env={**self.env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz")
        return process, url

    # -- data ---------------------------------------------------------------------------------

    async def setup(self, runtime: Runtime) -> None:
        await prepare_database(runtime)
        async with runtime.sessionmaker() as session, session.begin():
            self.regions = list(
                (
                    await session.scalars(
                        select(Region.code).where(Region.kind != "provinsi").order_by(Region.code)
                    )
                ).all()
            )
            _, self.key = await create_key(session, name="bench", role="ministry-admin", regions=[])
        rng = random.Random(514)
        gmsc, spbe = get_framework("gmsc-2023"), get_framework("spbe-2020")
        components = [node.id for node in gmsc.index.children]
        indicators = [node.id for node in spbe.nodes() if node.is_leaf]
        # Realistic national inputs: every kab/kota on both instruments for 2024, and the first
        # 50 on SPBE for 2023 (the small run of P5).
        cases = [(r, "gmsc-2023", 2024) for r in self.regions]
        cases += [(r, "spbe-2020", 2024) for r in self.regions]
        cases += [(r, "spbe-2020", 2023) for r in self.regions[:50]]
        assessments, inputs = [], []
        for region, framework, period in cases:
            identifier = uuid.uuid4()
            assessments.append(
                {
                    "id": identifier,
                    "region_code": region,
                    "framework_id": framework,
                    "period": period,
                    "stage": "final",
                    "state": "published",
                    "input_revision": 1,
                }
            )
            if framework == "gmsc-2023":
                values = {c: str(Decimal(rng.randint(100, 400)) / 100) for c in components}
            else:
                values = {i: str(rng.randint(1, 5)) for i in indicators}
            inputs += [
                {"assessment_id": identifier, "node_id": node, "self_value": value}
                for node, value in values.items()
            ]
        async with runtime.sessionmaker() as session, session.begin():
            await session.execute(insert(Assessment), assessments)
            await session.execute(insert(AssessmentInput), inputs)
        self.results["setup"] = {
            "regions": len(self.regions),
            "assessments": len(assessments),
            "inputs": len(inputs),
        }

    # -- P2 and P5 ----------------------------------------------------------------------------

    async def p2_recompute(self, runtime: Runtime) -> None:
        started = time.perf_counter()
        for framework in ("gmsc-2023", "spbe-2020"):
            async with runtime.sessionmaker() as session, session.begin():
                run = await create_run(
                    session,
                    operator_context("bench"),
                    framework_id=framework,
                    period=2024,
                    region_code=None,
                    queue=None,
                )
            while await run_step(runtime.sessionmaker, run.id, None) is not None:
                pass
        recompute = time.perf_counter() - started
        # The run marked the linked views of 514 regions dirty. Settle them here, untimed, or
        # the server's worker would recompute them during P1, P3 and P4.
        async with runtime.sessionmaker() as session, session.begin():
            linked = await create_run(
                session,
                operator_context("bench"),
                framework_id="smartcity-spbe-linked",
                period=None,
                region_code=None,
                queue=None,
            )
        while await run_step(runtime.sessionmaker, linked.id, None) is not None:
            pass
        # The baseline: both flat official formulas as one SQL aggregate over the same inputs.
        shares = []
        for framework_id in ("gmsc-2023", "spbe-2020"):
            framework = get_framework(framework_id)
            leaves = [n for n in framework.index.walk() if n.is_leaf]
            total = sum(leaf_share(framework, leaf) for leaf in leaves)
            assert total == 1
            for leaf in leaves:
                share = leaf_share(framework, leaf)
                exact = Decimal(share.numerator) / Decimal(share.denominator)
                shares.append(f"('{framework_id}', '{leaf.id}', {exact})")
        query = f"""
            WITH w(framework, node, share) AS (VALUES {", ".join(shares)})
            SELECT a.id, round(sum(w.share * (i.self_value #>> '{{}}')::numeric), 2)
            FROM assessment a
            JOIN assessment_input i ON i.assessment_id = a.id
            JOIN w ON w.framework = a.framework_id AND w.node = i.node_id
            WHERE a.period = 2024 GROUP BY a.id
        """
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.fetch(query)  # warm
            started = time.perf_counter()
            rows = await connection.fetch(query)
            sql = time.perf_counter() - started
            mismatches = await connection.fetchval(f"""
                WITH flat AS ({query})
                SELECT count(*) FROM flat JOIN result_state s ON s.assessment_id = flat.id
                WHERE s.index_value IS DISTINCT FROM flat.round""")
            # Context, not the baseline: what SQL alone takes to replace the result rows the
            # recompute writes (one per node, explained), i.e. the storage share of the run.
            await connection.execute("""
                CREATE TEMP TABLE saved AS SELECT n.* FROM result_node n
                JOIN assessment a ON a.id = n.assessment_id WHERE a.period = 2024
                  AND a.framework_id IN ('gmsc-2023', 'spbe-2020')""")
            result_rows = await connection.fetchval("SELECT count(*) FROM saved")
            transaction = connection.transaction()
            await transaction.start()
            started = time.perf_counter()
            await connection.execute("""
                DELETE FROM result_node n USING assessment a
                WHERE a.id = n.assessment_id AND a.period = 2024
                  AND a.framework_id IN ('gmsc-2023', 'spbe-2020')""")
            await connection.execute("INSERT INTO result_node SELECT * FROM saved")
            rewrite = time.perf_counter() - started
            await transaction.rollback()
        finally:
            await connection.close()
        self.results["P2"] = {
            "ratio": recompute / sql,
            "recompute_s": recompute,
            "sql_s": sql,
            "assessments": len(rows),
            "differing_from_sql": mismatches,
            "result_rows": result_rows,
            "sql_rewrite_rows_s": rewrite,
        }

    def p5_memory(self) -> None:
        def peak(period: int) -> tuple[int, float]:
            return peak_rss(
                ["recompute", "--framework", "spbe-2020", "--period", str(period)], self.env
            )

        small, small_s = peak(2023)
        large, large_s = peak(2024)
        self.results["P5"] = {
            "ratio": large / small,
            "peak_50_mib": small / 2**20,
            "peak_514_mib": large / 2**20,
            "seconds_50": small_s,
            "seconds_514": large_s,
        }

    # -- P1, P3, P4 (a running server) --------------------------------------------------------

    async def p1_ingest(self, url: str) -> None:
        """One pusher against one COPY stream (the ratio), then two against two: super-apps
        push side by side, and the baseline gets the same parallelism."""
        one = await self.p1_run(url, concurrency=1)
        two = await self.p1_run(url, concurrency=2)
        self.results["P1"] = {
            **one,
            "two_pushers_ratio": two["ratio"],
            "two_pushers_points_per_s": two["http_points_per_s"],
            "two_copy_streams_rows_per_s": two["copy_rows_per_s"],
        }

    async def p1_run(self, url: str, concurrency: int) -> dict[str, Any]:
        rows = []
        months = [f"{2019 + n // 12}-{n % 12 + 1:02d}" for n in range(40)]
        for month in months:
            for region in self.regions:
                rows.append((region, month))
        rows = rows[:20_000]
        batches = [rows[i : i + 1000] for i in range(0, len(rows), 1000)]
        path = self.folder / "batches.jsonl"
        with path.open("w") as file:
            for batch in batches:
                points = [
                    {"region": r, "metric": "active_users", "period": m, "value": n}
                    for n, (r, m) in enumerate(batch)
                ]
                file.write(json.dumps({"points": points}) + "\n")
        connection = await asyncpg.connect(self.dsn)
        try:  # both sides create every row (a rerun starts from the same state)
            await connection.execute("DELETE FROM metric_point WHERE metric = 'active_users'")
            await connection.execute("VACUUM ANALYZE metric_point")
        finally:
            await connection.close()
        run = subprocess.run(
            [PYTHON, "-m", "bench.client", "ingest", url, self.key, str(path), str(concurrency)],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        )
        http = json.loads(run.stdout)
        records = [
            (
                r,
                "active_users",
                m,
                date(int(m[:4]), int(m[5:]), 1),
                int(m[:4]),
                "{}",
                "",
                Decimal(n),
            )
            for n, (r, m) in enumerate(rows)
        ]
        columns = list(STAGED_COLUMNS[1:])  # the staged row's columns, without its index
        # The baseline at the same concurrency: as many COPY streams as the client has pushers.
        connections = [await asyncpg.connect(self.dsn) for _ in range(concurrency)]
        try:
            await connections[0].execute("DELETE FROM metric_point WHERE metric = 'active_users'")
            await connections[0].execute("VACUUM ANALYZE metric_point")
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    connection.copy_records_to_table(
                        "metric_point", records=records[n::concurrency], columns=columns
                    )
                    for n, connection in enumerate(connections)
                )
            )
            copy = time.perf_counter() - started
        finally:
            for connection in connections:
                await connection.close()
        http_rate, copy_rate = http["points"] / http["seconds"], len(records) / copy
        return {
            "ratio": http_rate / copy_rate,
            "http_points_per_s": http_rate,
            "copy_rows_per_s": copy_rate,
            "points": http["points"],
            "batch": 1000,
        }

    async def p3_freshness(self, url: str, runtime: Runtime, samples: int = 40) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        region = self.regions[0]
        latencies = []
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            for n in range(samples + 1):
                point = {
                    "region": region,
                    "metric": "integrated_apps",
                    "period": "2024-06",
                    "value": 100 + n,
                }
                started = time.perf_counter()
                response = await client.post("/v1/metrics:batch", json={"points": [point]})
                assert response.status_code == 200, response.text
                while True:
                    page = (
                        await client.get(
                            "/v1/assessments",
                            params={"framework": "smartcity-spbe-linked", "region": region},
                        )
                    ).json()
                    item = page["items"][0] if page["items"] else None
                    if (
                        item
                        and item["result"]
                        and (item["result"]["input_revision"] == item["input_revision"])
                    ):
                        break
                    await asyncio.sleep(0.005)
                if n:  # the first push also creates the assessment
                    latencies.append(time.perf_counter() - started)
        baseline = []
        redis = runtime.queue.redis
        for _ in range(samples):
            started = time.perf_counter()
            job = await redis.enqueue_job("ping")
            assert job is not None
            await wait_job(job)
            baseline.append(time.perf_counter() - started)
        p50, base50 = statistics.median(latencies), statistics.median(baseline)
        self.results["P3"] = {
            "ratio": p50 / base50,
            "push_p50_ms": p50 * 1000,
            "push_p99_ms": quantile(latencies, 0.99) * 1000,
            "noop_p50_ms": base50 * 1000,
            "noop_p99_ms": quantile(baseline, 0.99) * 1000,
            "samples": samples,
        }

    def p4_reads(self, url: str, seconds: float = 5, concurrency: int = 8) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        summary_of = httpx.get(
            f"{url}/v1/assessments",
            params={"framework": "spbe-2020", "region": self.regions[0], "period": 2024},
        ).json()
        assessment = summary_of["items"][0]["id"]
        paths = [
            "/v1/rankings?framework=spbe-2020&period=2024",
            f"/v1/assessments/{assessment}/summary",
        ]
        body = httpx.get(f"{url}{paths[0]}", headers=headers).content
        body_file = self.folder / "body.json"
        body_file.write_bytes(body)
        port = free_port()
        bare = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "uvicorn",
                "bench.bare:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={**self.env, "BENCH_BODY_FILE": str(body_file)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bare_url = f"http://127.0.0.1:{port}"
            wait_http(bare_url)
            measured = {}
            for name, target in (("cerdas", url), ("bare", bare_url)):
                run = subprocess.run(
                    [
                        PYTHON,
                        "-m",
                        "bench.client",
                        "read",
                        target,
                        str(seconds),
                        str(concurrency),
                        *paths,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=self.env,
                )
                result = json.loads(run.stdout)
                assert result["failed"] == 0, result
                measured[name] = result["requests"] / result["seconds"]
        finally:
            bare.terminate()
            bare.wait(timeout=30)
        self.results["P4"] = {
            "ratio": measured["cerdas"] / measured["bare"],
            "cerdas_rps": measured["cerdas"],
            "bare_rps": measured["bare"],
            "ranking_bytes": len(body),
            "concurrency": concurrency,
        }


def peak_rss(arguments: list[str], env: dict[str, str]) -> tuple[int, float]:
    """Run ``cerdas <arguments>`` in a process of its own: its peak RSS (bytes, sampled every
    10 ms) and how long it took (seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "services.cli", *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    handle, top = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            top = max(top, handle.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    assert process.returncode == 0, f"cerdas {' '.join(arguments)} failed"
    return top, time.perf_counter() - started


def leaf_share(framework: Any, leaf: Any) -> Any:
    """A leaf's share of the index: the product of weight ÷ siblings' total down its path."""
    from fractions import Fraction

    share = Fraction(1)
    node = framework.index
    for part in leaf.path.split("/")[1:]:
        child = next(c for c in node.children if c.id == part)
        share *= child.weight / sum(c.weight for c in node.children)
        node = child
    return share


async def wait_job(job: Job) -> None:
    from arq.jobs import JobStatus

    while await job.status() != JobStatus.complete:
        await asyncio.sleep(0.005)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verdict(name: str, ratio: float) -> str:
    kind, bound = TARGETS[name]
    ok = (
        ratio >= bound
        if kind == ">="
        else ratio <= bound
        if kind == "<="
        else abs(ratio - 1) <= bound
    )
    return "met" if ok else "MISSED"


async def main() -> None:
    started = time.perf_counter()
    bench = Bench()
    runtime = await Runtime.open(bench.settings)
    try:
        await bench.setup(runtime)
        await bench.p2_recompute(runtime)
        bench.p5_memory()
        server, url = bench.serve()
        try:
            await bench.p1_ingest(url)
            await bench.p3_freshness(url, runtime)
            bench.p4_reads(url)
        finally:
            server.terminate()
            server.wait(timeout=60)
    finally:
        await runtime.close()
        bench.close()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "seconds": time.perf_counter() - started,
        **bench.results,
    }
    for name in TARGETS:
        report[name]["target"] = " ".join(map(str, TARGETS[name]))
        report[name]["verdict"] = verdict(name, report[name]["ratio"])
    REPORT.write_text(json.dumps(report, indent=2, default=str))
    print(f"{'':4} {'ratio':>8}  {'target':<10} {'verdict':<7} figures")
    for name in TARGETS:
        entry = report[name]
        figures = ", ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in entry.items()
            if k not in {"ratio", "target", "verdict"}
        )
        print(
            f"{name:4} {entry['ratio']:>8.3f}  {entry['target']:<10} {entry['verdict']:<7} "
            f"{figures}"
        )
    print(f"report: {REPORT} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
