"""`make bench-scale` (and the second half of `make bench`): Cerdas at national scale, ten
years on (issue 19).

A deterministic (seeded) load of 38 provinces + 514 kab/kota over ten periods, 2017–2026:
every official assessment of a framework *in force* that year (gmsc-2023 from 2021, spbe-2020
2020–2025, ipd-2026 from 2026; nothing is in force 2017–2019; the linked smartcity-spbe view is
not generated), 20,000 agencies (OPD, 20–40 a region) each with an internal assessment on the
e-government instrument of the latest period, evidence metadata for 5% of the entered
indicators, and ten years of monthly metric points (10 million at ``--scale 1``). Everything is
loaded with COPY, not the ORM. Then, each against a baseline measured in the same run:

    S1 recompute  national recompute of the latest period ÷ SQL alone computing the weighted
                  sums and replacing the same result rows (DELETE + INSERT)            ≤ 2
                  then every index, self-assessed and verified index checked against the
                  flat official formulas in SQL (0 differing), and `cerdas recompute` of
                  the latest period and of all ten in processes of their own: time and
                  peak RSS (flat from one period to ten: ±10%)
    S4 series     one region's ten-year series of one metric: p50/p99 over 200 queries, with
                  EXPLAIN (ANALYZE) of the query                                       (figures)
    S5 ingest     POST /v1/metrics:batch points/s ÷ the same import statement run directly
                  in Postgres over the same rows                                        ≥ 0.6

    python -m bench.scale [--scale 0.1] [--quick] [--only S1,S5]
                                    (--quick is --scale 0.01; --only measures those parts)

Writes bench-scale-report.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

from bench.live import SERVICES, Live
from bench.run import PYTHON, Bench, leaf_share, peak_rss, quantile
from services.domain.access.principal import operator_context
from services.domain.access.service import create_key
from services.domain.recompute.service import create_run
from services.ingest.evidence.sniff import ALLOWED
from services.ingest.metric.repository import _IMPORT_ARRAYS, list_points
from services.kit.runtime import Runtime
from services.kit.storage import object_key
from services.main import prepare_database
from services.models import Region
from services.scoring.frameworks import get_framework
from services.scoring.service import run_step

REPORT = Path("bench-scale-report.json")
FULL_POINTS = 10_000_000
YEARS = list(range(2017, 2027))
LATEST = YEARS[-1]
# Official frameworks and the years they are in force (services/scoring/frameworks/*.yaml).
FRAMEWORKS = ("gmsc-2023", "spbe-2020", "ipd-2026")
TARGETS = {"S1": ("<=", 2.0), "S2": ("<=", 3.0), "S3": (">=", 0.9), "S5": (">=", 0.6)}
SERIES_METRIC = "active_users"


def in_force(framework_id: str, year: int) -> bool:
    return get_framework(framework_id).in_force.covers(year)


def series_plan(target_points: int, regions: int) -> list[tuple[str, str]]:
    """The monthly series (metric, service dimension or "") each region carries, enough to reach
    ``target_points`` over ten years: four plain metrics, transactions for the catalogue's eight
    services, then response times for as many services as it takes (a super-app integrating
    ~140 services, as Bogor's does, reaches 10 million)."""
    wanted = max(1, round(target_points / (regions * 12 * len(YEARS))))
    plain = [
        "active_users",
        "integrated_apps",
        "integrated_apps_target",
        "complaints_resolved_ratio",
    ]
    services = list(SERVICES)
    plan = [(metric, "") for metric in plain] + [("service_transactions", s) for s in services]
    plan += [("service_response_time", f"layanan-{n:03d}") for n in range(max(0, wanted - 12))]
    return plan[:wanted]


def metric_records(
    regions: list[str], plan: list[tuple[str, str]], seed: int
) -> Iterator[tuple[Any, ...]]:
    """Rows for COPY into metric_point, in the staged column order, deterministic by seed."""
    rng = random.Random(seed)
    months = [(year, month) for year in YEARS for month in range(1, 13)]
    for region in regions:
        for metric, service in plan:
            dimensions = json.dumps({"service": service}) if service else "{}"
            key = f"service={service}" if service else ""
            level = rng.randint(10, 5000)
            for year, month in months:
                if metric == "complaints_resolved_ratio":
                    value = Decimal(rng.randint(0, 100)) / 100
                else:
                    value = Decimal(level + rng.randint(0, level))
                yield (
                    region,
                    metric,
                    f"{year}-{month:02d}",
                    date(year, month, 1),
                    year,
                    dimensions,
                    key,
                    value,
                )


ASSESSMENT_COLUMNS = (
    "id",
    "region_code",
    "framework_id",
    "period",
    "stage",
    "state",
    "input_revision",
    "agency_id",
)
INTERNAL_ASSESSMENTS = 20_000
# Perangkat daerah a kabupaten/kota typically has (PP 18/2016): name and kind. A region has 20–40
# of them; past this list they are kecamatan.
OPD = [
    ("Sekretariat Daerah", "sekretariat"),
    ("Sekretariat DPRD", "sekretariat"),
    ("Inspektorat Daerah", "inspektorat"),
    ("Dinas Pendidikan", "dinas"),
    ("Dinas Kesehatan", "dinas"),
    ("Dinas Pekerjaan Umum dan Penataan Ruang", "dinas"),
    ("Dinas Perumahan dan Kawasan Permukiman", "dinas"),
    ("Dinas Sosial", "dinas"),
    ("Dinas Tenaga Kerja", "dinas"),
    ("Dinas Lingkungan Hidup", "dinas"),
    ("Dinas Kependudukan dan Pencatatan Sipil", "dinas"),
    ("Dinas Perhubungan", "dinas"),
    ("Dinas Komunikasi dan Informatika", "dinas"),
    ("Dinas Koperasi dan Usaha Mikro", "dinas"),
    ("Dinas Penanaman Modal dan PTSP", "dinas"),
    ("Dinas Kepemudaan dan Olahraga", "dinas"),
    ("Dinas Pariwisata dan Kebudayaan", "dinas"),
    ("Dinas Perpustakaan dan Kearsipan", "dinas"),
    ("Dinas Pertanian dan Pangan", "dinas"),
    ("Dinas Perikanan", "dinas"),
    ("Dinas Perdagangan dan Perindustrian", "dinas"),
    ("Dinas Pengendalian Penduduk dan KB", "dinas"),
    ("Dinas Pemberdayaan Perempuan dan Perlindungan Anak", "dinas"),
    ("Dinas Pemberdayaan Masyarakat dan Desa", "dinas"),
    ("Badan Perencanaan Pembangunan Daerah", "badan"),
    ("Badan Pengelolaan Keuangan dan Aset Daerah", "badan"),
    ("Badan Pendapatan Daerah", "badan"),
    ("Badan Kepegawaian dan Pengembangan SDM", "badan"),
    ("Badan Penanggulangan Bencana Daerah", "badan"),
    ("Badan Kesatuan Bangsa dan Politik", "badan"),
    ("Satuan Polisi Pamong Praja", "satuan"),
    ("Rumah Sakit Umum Daerah", "rumah-sakit"),
]


def e_government(year: int) -> str:
    """The e-government instrument in force in ``year`` (SPBE 2020 up to 2025, IPD from 2026)."""
    return next(
        f for f in FRAMEWORKS if get_framework(f).family == "e-government" and in_force(f, year)
    )


def entered_value(framework_id: str, rng: random.Random) -> str:
    """A plausible entered leaf value: an SPBE level 1–5, an IPD value 1.00–5.00."""
    if framework_id == "spbe-2020":
        return str(rng.randint(1, 5))
    return str(Decimal(rng.randint(100, 500)) / 100)


def opd_records(
    regions: list[str], seed: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Agencies (20–40 per region, 20,000 in all) and one internal assessment of each on the
    e-government instrument of the latest period, with its inputs (assessment, node, self,
    verified). A third are drafts (the agency's own values), a third in review (half of the
    values verified), a third verified (every value verified, some changed)."""
    rng = random.Random(seed)
    counts = [rng.randint(20, 40) for _ in regions]
    while (total := sum(counts)) != INTERNAL_ASSESSMENTS:  # reach exactly 20,000 within 20–40
        n = rng.randrange(len(counts))
        if total < INTERNAL_ASSESSMENTS and counts[n] < 40:
            counts[n] += 1
        elif total > INTERNAL_ASSESSMENTS and counts[n] > 20:
            counts[n] -= 1
    framework_id = e_government(LATEST)
    leaves = [
        n.id for n in get_framework(framework_id).nodes() if n.is_leaf and n.input == "assessed"
    ]
    agencies, assessments, inputs = [], [], []
    for region, count in zip(regions, counts, strict=True):
        for n in range(count):
            name, kind = OPD[n] if n < len(OPD) else (f"Kecamatan {n - len(OPD) + 1}", "kecamatan")
            agency = uuid.uuid4()
            agencies.append((agency, region, name, kind))
            state = ("draft", "in_review", "verified")[rng.randrange(3)]
            identifier = uuid.uuid4()
            assessments.append(
                (identifier, region, framework_id, LATEST, "final", state, 1, agency)
            )
            for leaf in leaves:
                own = entered_value(framework_id, rng)
                verified = None
                if state == "verified" or (state == "in_review" and rng.random() < 0.5):
                    verified = own if rng.random() < 0.7 else entered_value(framework_id, rng)
                inputs.append(
                    (
                        identifier,
                        leaf,
                        json.dumps(own),
                        None if verified is None else json.dumps(verified),
                    )
                )
    return agencies, assessments, inputs


def evidence_records(
    indicators: list[tuple[uuid.UUID, str]], agency_of: dict[uuid.UUID, uuid.UUID], seed: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Evidence metadata for 5% of the entered indicators (assessment, node): an object (no
    bytes stored; a key where the local store would keep them), an item linked to the node (and
    to the agency of an internal assessment), and its first revision."""
    rng = random.Random(seed)
    kinds = [("pdf", "application/pdf"), ("png", "image/png"), ("xlsx", ALLOWED["xlsx"])]
    objects, items, revisions = [], [], []
    for assessment, node in indicators:
        if rng.random() >= 0.05:
            continue
        sha256 = f"{rng.getrandbits(256):064x}"
        extension, content_type = rng.choice(kinds)
        objects.append((sha256, rng.randint(20_000, 5_000_000), content_type, object_key(sha256)))
        item = uuid.uuid4()
        items.append(
            (item, assessment, [node], f"Bukti dukung {node}", agency_of.get(assessment), 1)
        )
        revisions.append((uuid.uuid4(), item, 1, sha256, f"bukti-{node.lower()}.{extension}"))
    return objects, items, revisions


def chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Scale(Bench):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.server_pid = 0

    # -- load ---------------------------------------------------------------------------------

    async def load(self, runtime: Runtime) -> None:
        await prepare_database(runtime)
        async with runtime.sessionmaker() as session, session.begin():
            everyone = (await session.execute(select(Region.code, Region.kind))).all()
            key, self.key = await create_key(
                session, name="bench-scale", role="ministry-admin", regions=[]
            )
            self.key_id = key.id
        self.all_regions = sorted(code for code, _ in everyone)
        self.regions = sorted(code for code, kind in everyone if kind != "provinsi")
        rng = random.Random(19)
        assessments, inputs = [], []
        per_framework: dict[str, list[int]] = {}
        for framework_id in FRAMEWORKS:
            framework = get_framework(framework_id)
            years = [y for y in YEARS if in_force(framework_id, y)]
            per_framework[framework_id] = years
            if framework_id == "gmsc-2023":  # scored on its six components (as `make bench`)
                nodes = [(node.id, "score") for node in framework.index.children]
            else:
                nodes = [
                    (node.id, framework_id)
                    for node in framework.nodes()
                    if node.is_leaf and node.input == "assessed"
                ]
            for year in years:
                for region in self.all_regions:
                    identifier = uuid.uuid4()
                    assessments.append(
                        (identifier, region, framework_id, year, "final", "published", 1)
                    )
                    for node, kind in nodes:
                        if kind == "score":
                            value = str(Decimal(rng.randint(100, 400)) / 100)
                        else:
                            value = entered_value(kind, rng)
                        inputs.append((identifier, node, json.dumps(value)))
        agencies, internal, internal_inputs = opd_records(self.all_regions, seed=20)
        evidence = evidence_records(
            [(a, n) for a, n, _ in inputs] + [(a, n) for a, n, *_ in internal_inputs],
            {row[0]: row[7] for row in internal},
            seed=5,
        )
        plan = series_plan(round(FULL_POINTS * self.scale), len(self.all_regions))
        connection = await asyncpg.connect(self.dsn)
        try:
            started = time.perf_counter()
            await connection.copy_records_to_table(
                "assessment",
                records=assessments,
                columns=list(ASSESSMENT_COLUMNS[:-1]),
            )
            await connection.copy_records_to_table(
                "assessment_input",
                records=inputs,
                columns=["assessment_id", "node_id", "self_value"],
            )
            assessments_s = time.perf_counter() - started
            started = time.perf_counter()
            await connection.copy_records_to_table(
                "agency", records=agencies, columns=["id", "region_code", "name", "kind"]
            )
            await connection.copy_records_to_table(
                "assessment", records=internal, columns=list(ASSESSMENT_COLUMNS)
            )
            await connection.copy_records_to_table(
                "assessment_input",
                records=internal_inputs,
                columns=["assessment_id", "node_id", "self_value", "verified_value"],
            )
            internal_s = time.perf_counter() - started
            started = time.perf_counter()
            objects, items, revisions = evidence
            await connection.copy_records_to_table(
                "evidence_object",
                records=objects,
                columns=["sha256", "size", "content_type", "storage_key"],
            )
            await connection.copy_records_to_table(
                "evidence_item",
                records=items,
                columns=[
                    "id",
                    "assessment_id",
                    "node_ids",
                    "title",
                    "agency_id",
                    "latest_revision",
                ],
            )
            await connection.copy_records_to_table(
                "evidence_revision",
                records=revisions,
                columns=["id", "item_id", "revision", "sha256", "filename"],
            )
            evidence_s = time.perf_counter() - started
            started = time.perf_counter()
            points = 0
            columns = [
                "region_code",
                "metric",
                "period",
                "period_start",
                "year",
                "dimensions",
                "dimension_key",
                "value",
            ]
            for batch in chunks(metric_records(self.all_regions, plan, seed=2026), 200_000):
                await connection.copy_records_to_table(
                    "metric_point", records=batch, columns=columns
                )
                points += len(batch)
            points_s = time.perf_counter() - started
            started = time.perf_counter()
            await connection.execute("VACUUM ANALYZE")
            vacuum_s = time.perf_counter() - started
            size = await connection.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size('metric_point'))"
            )
        finally:
            await connection.close()
        self.results["load"] = {
            "scale": self.scale,
            "regions": len(self.all_regions),
            "kab_kota": len(self.regions),
            "years": f"{YEARS[0]}-{YEARS[-1]}",
            "assessments_by_framework": {
                f: {"years": ys, "assessments": len(ys) * len(self.all_regions)}
                for f, ys in per_framework.items()
            },
            "assessments": len(assessments),
            "inputs": len(inputs),
            "assessments_copy_s": assessments_s,
            "agencies": len(agencies),
            "internal_assessments": len(internal),
            "internal_framework": internal[0][2],
            "internal_inputs": len(internal_inputs),
            "internal_copy_s": internal_s,
            "evidence_items": len(evidence[1]),
            "evidence_share_of_inputs": len(evidence[1]) / (len(inputs) + len(internal_inputs)),
            "evidence_copy_s": evidence_s,
            "series_per_region": len(plan),
            "metric_points": points,
            "metric_points_copy_s": points_s,
            "metric_points_per_s": points / points_s,
            "vacuum_analyze_s": vacuum_s,
            "metric_point_size": size,
            "not_generated": "the linked smartcity-spbe view; evidence bytes (metadata only)",
        }

    # -- S1 -----------------------------------------------------------------------------------

    async def s1_recompute(self, runtime: Runtime, profile: bool) -> None:
        frameworks = [f for f in FRAMEWORKS if in_force(f, LATEST)]

        cpu: list[float] = []

        async def recompute() -> float:
            started, process_started = time.perf_counter(), time.process_time()
            for framework in frameworks:
                async with runtime.sessionmaker() as session, session.begin():
                    run = await create_run(
                        session,
                        operator_context("bench"),
                        framework_id=framework,
                        period=LATEST,
                        region_code=None,
                        queue=None,
                    )
                while await run_step(runtime.sessionmaker, run.id, None) is not None:
                    pass
            cpu.append(time.process_time() - process_started)
            return time.perf_counter() - started

        first = await recompute()  # creates the result rows; the timed run replaces them
        spy = Spy(self.folder / "s1.txt", os.getpid()) if profile else None
        timed = await recompute()
        profiled = spy.stop() if spy else None
        scope = f"a.period = {LATEST} AND a.framework_id IN ({', '.join(map(repr, frameworks))})"
        aggregate = flat_index_sql(frameworks, scope)
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.fetch(aggregate)  # warm
            started = time.perf_counter()
            rows = await connection.fetch(aggregate)
            aggregate_s = time.perf_counter() - started
            checked = await check_indices(connection, frameworks, scope)
            for table in ("result_node", "result_state"):
                await connection.execute(f"""
                    CREATE TEMP TABLE saved_{table} AS SELECT n.* FROM {table} n
                    JOIN assessment a ON a.id = n.assessment_id WHERE {scope}""")
            node_rows = await connection.fetchval("SELECT count(*) FROM saved_result_node")
            state_rows = await connection.fetchval("SELECT count(*) FROM saved_result_state")
            width = await connection.fetchval(
                "SELECT avg(pg_column_size(s.*))::int FROM saved_result_node s"
            )
            rewrites = []
            for _ in range(2):
                transaction = connection.transaction()
                await transaction.start()
                started = time.perf_counter()
                for table in ("result_node", "result_state"):
                    await connection.execute(f"""
                        DELETE FROM {table} n USING assessment a
                        WHERE a.id = n.assessment_id AND {scope}""")
                    await connection.execute(f"INSERT INTO {table} SELECT * FROM saved_{table}")
                rewrites.append(time.perf_counter() - started)
                await transaction.rollback()
        finally:
            await connection.close()
        rewrite_s = min(rewrites)
        floor = aggregate_s + rewrite_s
        self.results["S1"] = {
            "ratio": timed / floor,
            "recompute_s": timed,
            # This process's CPU time during the timed run (Postgres's is not in it): on a
            # shared machine, the part of the wall time that is Cerdas's own Python.
            "recompute_cpu_s": cpu[-1],
            "first_recompute_s": first,
            "floor_s": floor,
            "sql_aggregate_s": aggregate_s,
            "sql_rewrite_s": rewrite_s,
            "frameworks": frameworks,
            "assessments": len(rows),
            "result_node_rows": node_rows,
            "result_state_rows": state_rows,
            "result_node_avg_bytes": width,
            "checked_against_sql": checked,
            "differing": sum(c["differing"] for c in checked),
        }
        if profiled:
            self.results["S1"]["profile"] = profiled

    def s1_all_periods(self) -> None:
        """The worker's recompute of the latest period, then of all ten, each in a process of
        its own (``cerdas recompute``, the batched run): time and peak RSS, and every index of
        every period checked against the flat formulas afterwards."""
        one, one_s = peak_rss(["recompute", "--period", str(LATEST)], self.env)
        ten, ten_s = peak_rss(["recompute", "--all"], self.env)
        self.results["S1"]["latest_period_process"] = {
            "seconds": one_s,
            "peak_rss_mib": one / 2**20,
        }
        self.results["S1"]["all_periods_process"] = {"seconds": ten_s, "peak_rss_mib": ten / 2**20}
        self.results["S1"]["rss_ten_over_one_period"] = ten / one
        self.results["S1"]["rss_verdict"] = "met" if abs(ten / one - 1) <= 0.1 else "MISSED"

    async def check_all_periods(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            checked = await check_indices(connection, list(FRAMEWORKS), "true")
        finally:
            await connection.close()
        self.results["S1"]["all_periods_checked_against_sql"] = checked
        self.results["S1"]["all_periods_differing"] = sum(c["differing"] for c in checked)

    # -- S4 -----------------------------------------------------------------------------------

    async def s4_series(self, runtime: Runtime, samples: int = 200) -> None:
        rng = random.Random(4)
        picks = [rng.choice(self.all_regions) for _ in range(samples)]
        timings, points = [], 0
        async with runtime.sessionmaker() as session:
            for region in picks[:10]:  # warm the pool and the plan cache
                await list_points(
                    session,
                    regions=None,
                    region=region,
                    metric=SERIES_METRIC,
                    year=None,
                    after_id=None,
                    limit=1000,
                )
            for region in picks:
                started = time.perf_counter()
                found = await list_points(
                    session,
                    regions=None,
                    region=region,
                    metric=SERIES_METRIC,
                    year=None,
                    after_id=None,
                    limit=1000,
                )
                timings.append(time.perf_counter() - started)
                points += len(found)
            await session.rollback()
        connection = await asyncpg.connect(self.dsn)
        try:
            plan = await connection.fetch(
                """EXPLAIN (ANALYZE, BUFFERS)
                SELECT * FROM metric_point WHERE region_code = $1 AND metric = $2
                ORDER BY id LIMIT 1000""",
                picks[0],
                SERIES_METRIC,
            )
        finally:
            await connection.close()
        self.results["S4"] = {
            "p50_ms": quantile(timings, 0.5) * 1000,
            "p99_ms": quantile(timings, 0.99) * 1000,
            "max_ms": max(timings) * 1000,
            "queries": samples,
            "points_per_series": points / samples,
            "query": "services.ingest.metric.repository.list_points(region, metric, limit=1000)",
            "explain": [row[0] for row in plan],
        }

    async def s4_http(self, url: str, samples: int = 200) -> None:
        rng = random.Random(4)
        headers = {"Authorization": f"Bearer {self.key}"}
        timings = []
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            for n in range(samples + 10):
                region = rng.choice(self.all_regions)
                started = time.perf_counter()
                response = await client.get(
                    "/v1/metrics", params={"region": region, "metric": SERIES_METRIC, "limit": 1000}
                )
                assert response.status_code == 200, response.text
                if n >= 10:
                    timings.append(time.perf_counter() - started)
        self.results["S4"]["http_p50_ms"] = quantile(timings, 0.5) * 1000
        self.results["S4"]["http_p99_ms"] = quantile(timings, 0.99) * 1000

    # -- S5 -----------------------------------------------------------------------------------

    def s5_rows(self) -> list[tuple[str, str]]:
        months = [f"{2019 + n // 12}-{n % 12 + 1:02d}" for n in range(40)]
        rows = [(region, month) for month in months for region in self.regions]
        return rows[:20_000]

    async def s5_reset(self, rows: list[tuple[str, str]]) -> None:
        """Both sides create every point into the loaded table: remove the same rows first."""
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(
                """DELETE FROM metric_point p USING unnest($1::text[], $2::text[]) AS d(r, m)
                WHERE p.region_code = d.r AND p.metric = $3 AND p.period = d.m
                  AND p.dimension_key = ''""",
                [r for r, _ in rows],
                [m for _, m in rows],
                SERIES_METRIC,
            )
            await connection.execute("VACUUM ANALYZE metric_point")
        finally:
            await connection.close()

    async def s5_ingest(self, url: str, profile: bool) -> None:
        rows = self.s5_rows()
        batches = [rows[i : i + 1000] for i in range(0, len(rows), 1000)]
        path = self.folder / "scale-batches.jsonl"
        with path.open("w") as file:
            for batch in batches:
                points = [
                    {"region": r, "metric": SERIES_METRIC, "period": m, "value": n}
                    for n, (r, m) in enumerate(batch)
                ]
                file.write(json.dumps({"points": points}) + "\n")
        await self.s5_reset(rows)
        cpu_before = process_cpu_seconds(self.server_pid)
        run = subprocess.run(
            [PYTHON, "-m", "bench.client", "ingest", url, self.key, str(path), "1"],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        )
        cpu_after = process_cpu_seconds(self.server_pid)
        http = json.loads(run.stdout)
        # The baseline: the endpoint's own import statement (as the endpoint runs it, with
        # sequential scans off for its plan), one transaction per batch, straight on asyncpg.
        names: list[str] = []

        def positional(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        statement = re.sub(r"(?<![:\w]):([a-z_]+)", positional, _IMPORT_ARRAYS.text)
        await self.s5_reset(rows)
        connection = await asyncpg.connect(self.dsn)
        try:
            prepared = await connection.prepare(statement)
            created = 0
            started = time.perf_counter()
            for batch in batches:
                params: dict[str, Any] = {
                    "ord": list(range(len(batch))),
                    "region_code": [r for r, _ in batch],
                    "metric": [SERIES_METRIC] * len(batch),
                    "period": [m for _, m in batch],
                    "period_start": [date(int(m[:4]), int(m[5:]), 1) for _, m in batch],
                    "year": [int(m[:4]) for _, m in batch],
                    "dimensions": ["{}"] * len(batch),
                    "dimension_key": [""] * len(batch),
                    "value": [str(n) for n in range(len(batch))],
                    "store": True,
                    "atomic": True,
                    "source_key_id": self.key_id,
                    "audit_actor_id": self.key_id,
                    "audit_actor_person_id": None,
                    "audit_actor_subject": None,
                    "audit_actor_nip": None,
                    "audit_actor_name": "bench-scale",
                    "audit_role": "ministry-admin",
                    "audit_request_id": uuid.uuid4().hex,
                }
                async with connection.transaction():
                    await connection.execute("SET LOCAL enable_seqscan = off")
                    result = await prepared.fetchrow(*(params[name] for name in names))
                    assert result is not None
                    created += result["created"]
            direct = time.perf_counter() - started
        finally:
            await connection.close()
        assert created == len(rows), created
        http_rate, direct_rate = http["points"] / http["seconds"], len(rows) / direct
        self.results["S5"] = {
            "ratio": http_rate / direct_rate,
            "http_points_per_s": http_rate,
            "direct_statement_rows_per_s": direct_rate,
            "points": len(rows),
            "batch": 1000,
            "into_table_of": self.results["load"]["metric_points"],
        }
        if cpu_before is not None and cpu_after is not None:
            # The server's CPU (user + system, all its threads) per batch of the HTTP push: less
            # noisy than the rate on a machine shared with other work.
            self.results["S5"]["server_cpu_ms_per_batch"] = (
                (cpu_after - cpu_before) * 1000 / len(batches)
            )
        if profile:
            await self.s5_reset(rows)
            self.results["S5"]["profile"] = self.s5_profile(url, path)

    def s5_profile(self, url: str, path: Path) -> dict[str, Any]:
        """py-spy on the server while the same batches are pushed again."""
        spy = Spy(self.folder / "s5.txt", self.server_pid)
        subprocess.run(
            [PYTHON, "-m", "bench.client", "ingest", url, self.key, str(path), "1"],
            capture_output=True,
            check=True,
            env=self.env,
        )
        return spy.stop()


def flat_shares(framework_id: str) -> tuple[list[tuple[str, int, Fraction | None, bool]], int]:
    """The official flat formula of ``framework_id``'s index, read from its framework file:
    per leaf (id, whole-number weight, value counted while absent, entered by the region?) and
    the common denominator, so that index = Σ weight × value ÷ denominator exactly. Only a tree
    of weighted means without multipliers has such a formula; anything else is refused."""
    framework = get_framework(framework_id)
    for node in framework.index.walk():
        if not node.is_leaf and (node.aggregation != "weighted_mean" or node.multiplier != 1):
            raise ValueError(f"{framework_id}/{node.id}: no flat weighted formula")
        if node.is_leaf and node.input not in ("assessed", "outside"):
            raise ValueError(f"{framework_id}/{node.id}: a {node.input} leaf")
    leaves = [leaf for leaf in framework.index.walk() if leaf.is_leaf]
    shares = [Fraction(leaf_share(framework, leaf)) for leaf in leaves]
    denominator = math.lcm(*(share.denominator for share in shares))
    return [
        (
            leaf.id,
            int(share * denominator),
            leaf.outside.absent_value if leaf.outside else None,
            leaf.input == "assessed",
        )
        for leaf, share in zip(leaves, shares, strict=True)
    ], denominator


# Each kind of index (METHODOLOGY.md; services.scoring.service.values_alone): an assessed leaf
# counts its verified value else the region's own, or only its own, or only the verified one;
# an outside index's leaf counts its entered value, else the value the file counts while absent.
_KINDS = {
    "index_value": "coalesce(i.verified_value, i.self_value)",
    "self_index_value": "CASE WHEN w.assessed THEN i.self_value "
    "ELSE coalesce(i.verified_value, i.self_value) END",
    "verified_index_value": "CASE WHEN w.assessed THEN i.verified_value "
    "ELSE coalesce(i.verified_value, i.self_value) END",
}


def _rounded(total: str) -> str:
    """SQL rounding the exact ``total`` ÷ f.denominator (≥ 0) to f.places decimals by f.mode,
    in exact integer arithmetic, as services.scoring.engine.numbers.rounded_units does."""
    scaled = f"({total}) * power(10::numeric, f.places)"
    quotient = f"div({scaled}, f.denominator)"
    twice = f"2 * ({scaled} - {quotient} * f.denominator)"
    return f"""({quotient} + CASE f.mode
        WHEN 'half_up' THEN ({twice} >= f.denominator)::int
        WHEN 'half_down' THEN ({twice} > f.denominator)::int
        WHEN 'half_even' THEN ({twice} > f.denominator
            OR ({twice} = f.denominator AND mod({quotient}, 2) = 1))::int
        WHEN 'up' THEN ({twice} > 0)::int
        ELSE 0 END) / power(10::numeric, f.places)"""


def flat_index_sql(
    frameworks: list[str], scope: str, kinds: tuple[str, ...] = ("index_value",)
) -> str:
    """SQL of each assessment's index (and with ``kinds``, its self-assessed and verified
    indices) in ``scope`` by the flat official formula, rounded as the framework file says:
    rows (id, framework_id, internal, <kind>...). An index missing a value it needs is NULL."""
    leaves, files = [], []
    for framework_id in frameworks:
        shares, denominator = flat_shares(framework_id)
        framework = get_framework(framework_id)
        files.append(
            f"('{framework_id}', {denominator}::numeric, {framework.precision}, "
            f"'{framework.rounding}')"
        )
        for node, weight, absent, assessed in shares:
            default = "NULL" if absent is None else plain_decimal(absent)
            leaves.append(f"('{framework_id}', '{node}', {weight}, {default}::numeric, {assessed})")
    sums = ",\n".join(
        f"""sum(w.weight * coalesce(({value} #>> '{{}}')::numeric, w.absent)) AS {kind},
        bool_and({value} IS NOT NULL OR w.absent IS NOT NULL) AS {kind}_complete"""
        for kind, value in ((kind, _KINDS[kind]) for kind in kinds)
    )
    rounded = ", ".join(
        f"CASE WHEN t.{kind}_complete THEN {_rounded(f't.{kind}')} END AS {kind}" for kind in kinds
    )
    return f"""
        WITH w(framework, node, weight, absent, assessed) AS (VALUES {", ".join(leaves)}),
        f(framework, denominator, places, mode) AS (VALUES {", ".join(files)}),
        t AS (
            SELECT a.id, a.framework_id, a.agency_id IS NOT NULL AS internal, {sums}
            FROM assessment a
            JOIN w ON w.framework = a.framework_id
            LEFT JOIN assessment_input i ON i.assessment_id = a.id AND i.node_id = w.node
            WHERE {scope}
            GROUP BY a.id
        )
        SELECT t.id, t.framework_id, t.internal, {rounded}
        FROM t JOIN f ON f.framework = t.framework_id
    """


def plain_decimal(value: Fraction) -> str:
    """A terminating fraction as exact decimal text (an absent value of 1, 0.5, ...)."""
    text = Decimal(value.numerator) / Decimal(value.denominator)
    if Fraction(text) != value:
        raise ValueError(f"{value} has no exact decimal")
    return format(text, "f")


async def check_indices(
    connection: asyncpg.Connection, frameworks: list[str], scope: str
) -> list[dict[str, Any]]:
    """Every recomputed index, self-assessed index and verified index in ``scope`` against the
    flat official formula in SQL: per framework, official and internal (OPD) apart, how many
    were checked and how many differ (a missing result counts as differing)."""
    kinds = tuple(_KINDS)
    flat = flat_index_sql(frameworks, scope, kinds)
    differs = " OR ".join(f"s.{kind} IS DISTINCT FROM flat.{kind}" for kind in kinds)
    rows = await connection.fetch(f"""
        WITH flat AS ({flat})
        SELECT flat.framework_id, flat.internal, count(*) AS assessments,
               count(*) FILTER (WHERE s.assessment_id IS NULL OR {differs}) AS differing,
               count(flat.self_index_value) AS with_self_index,
               count(flat.verified_index_value) AS with_verified_index
        FROM flat LEFT JOIN result_state s ON s.assessment_id = flat.id
        GROUP BY 1, 2 ORDER BY 1, 2""")
    return [dict(row) for row in rows]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Spy:
    """py-spy recording a process (if py-spy is installed beside this Python)."""

    def __init__(self, out: Path, pid: int) -> None:
        self.out = out
        spy = Path(PYTHON).with_name("py-spy")
        self.process = (
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if spy.exists()
            else None
        )
        time.sleep(1)  # attached before the work starts

    def stop(self) -> dict[str, Any]:
        if self.process is None:
            return {"skipped": "py-spy is not installed in the venv"}
        self.process.send_signal(2)
        self.process.wait(timeout=60)
        return summarise_profile(self.out)


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares of the hottest functions in a py-spy raw profile."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    project: dict[str, int] = {}  # inclusive, Cerdas's own functions only
    total = 0
    if not path.exists():
        return {"skipped": "py-spy wrote no profile"}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        names = [re.sub(r" \(.*?:\d+\)$", "", f).strip() + short(f) for f in frames]
        own[names[-1]] = own.get(names[-1], 0) + samples
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + samples
        ours = {
            name
            for name, frame in zip(names, frames, strict=True)
            if "services/" in frame and "site-packages" not in frame
        }
        for name in ours:
            project[name] = project.get(name, 0) + samples

    def ranked(table: dict[str, int], top: int = top) -> list[tuple[str, float]]:
        best = sorted(table.items(), key=lambda item: -item[1])[:top]
        return [(name, round(count / total, 3)) for name, count in best]

    return {
        "samples": total,
        "self": ranked(own),
        "inclusive": ranked(inclusive),
        "inclusive_cerdas": ranked(project, 25),
    }


def short(frame: str) -> str:
    """' (module)' for a frame 'function (path/to/module.py:123)'."""
    found = re.search(r"\(([^()]*?)(?::\d+)?\)$", frame)
    if not found:
        return ""
    module = found.group(1)
    for marker in ("site-packages/", "services/", "bench/"):
        if marker in module:
            module = module.split(marker, 1)[1]
            break
    return f" ({module})"


def verdict(name: str, ratio: float) -> str:
    kind, bound = TARGETS[name]
    return "met" if (ratio <= bound if kind == "<=" else ratio >= bound) else "MISSED"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=0.1, help="1 = 10 million metric points")
    parser.add_argument("--quick", action="store_true", help="the same as --scale 0.01")
    parser.add_argument("--profile", action="store_true", help="py-spy S1 and S5 (a second run)")
    parser.add_argument(
        "--only",
        default="S1,S2,S3,S4,S5",
        help="measure these parts only, comma-separated (S2 and S3 run together); for "
        "development: the report then has no verdict for the others",
    )
    args = parser.parse_args()
    only = {part.strip().upper() for part in args.only.split(",")}
    unknown = only - {"S1", "S2", "S3", "S4", "S5"}
    if unknown:
        parser.error(f"--only: no part named {', '.join(sorted(unknown))}")
    live_parts = bool(only & {"S2", "S3"})
    scale = 0.01 if args.quick else args.scale
    started = time.perf_counter()
    bench = Scale(scale)
    runtime = await Runtime.open(bench.settings)
    try:
        await bench.load(runtime)
        if "S1" in only:
            await bench.s1_recompute(runtime, args.profile)
            bench.s1_all_periods()
            await bench.check_all_periods()
        if "S4" in only:
            await bench.s4_series(runtime)
        server, url = bench.serve()
        bench.server_pid = server.pid
        try:
            if "S4" in only:
                await bench.s4_http(url)
            if "S5" in only:
                await bench.s5_ingest(url, args.profile)
            live = Live(
                url,
                bench.key,
                bench.regions,
                dsn=bench.dsn,
                redis_url=bench.env["REDIS_URL"],
                folder=bench.folder,
                env=bench.env,
                period=LATEST,
            )
            live.server_pid = server.pid
            if live_parts:
                for name, value in (await live.run(seconds=10 if args.quick else 30)).items():
                    bench.results[f"{name}_all_in_one"] = value
        finally:
            server.terminate()
            server.wait(timeout=60)
        if live_parts:
            bench.results.update(await live.run_split(seconds=10 if args.quick else 30))
    finally:
        await runtime.close()
        bench.close()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
        "seconds": time.perf_counter() - started,
        **bench.results,
    }
    for name in TARGETS:
        if name not in report:
            continue
        report[name]["target"] = " ".join(map(str, TARGETS[name]))
        report[name]["verdict"] = verdict(name, report[name]["ratio"])
    REPORT.write_text(json.dumps(report, indent=2, default=str))
    load = report["load"]
    print(
        f"load: {load['assessments']:,} assessments, {load['inputs']:,} inputs "
        f"({load['assessments_copy_s']:.1f} s); {load['agencies']:,} agencies and "
        f"{load['internal_assessments']:,} internal assessments, {load['internal_inputs']:,} "
        f"inputs ({load['internal_copy_s']:.1f} s); {load['evidence_items']:,} evidence items "
        f"({load['evidence_copy_s']:.1f} s); {load['metric_points']:,} metric points in "
        f"{load['metric_points_copy_s']:.1f} s ({load['metric_points_per_s']:,.0f}/s), "
        f"VACUUM ANALYZE {load['vacuum_analyze_s']:.1f} s, metric_point {load['metric_point_size']}"
    )
    if "S1" in report:
        print_s1(report["S1"])
    if "S4" in report:
        s4 = report["S4"]
        print(
            f"S4 p50 {s4['p50_ms']:.2f} ms, p99 {s4['p99_ms']:.2f} ms over {s4['queries']} "
            f"queries ({s4['points_per_series']:.0f} points each); HTTP p50 "
            f"{s4['http_p50_ms']:.1f} ms, p99 {s4['http_p99_ms']:.1f} ms"
        )
    if "S5" in report:
        s5 = report["S5"]
        print(
            f"S5 {s5['ratio']:8.3f}  target {s5['target']:<7} {s5['verdict']:<7} "
            f"{s5['http_points_per_s']:,.0f} points/s vs statement "
            f"{s5['direct_statement_rows_per_s']:,.0f} rows/s"
            + (
                f", server CPU {s5['server_cpu_ms_per_batch']:.1f} ms per batch"
                if "server_cpu_ms_per_batch" in s5
                else ""
            )
        )
    if "S2" in report:
        print_live(report)
    print(f"report: {REPORT} ({report['seconds']:.0f} s)")


def print_s1(s1: dict[str, Any]) -> None:
    print(
        f"S1 {s1['ratio']:8.2f}  target {s1['target']:<7} {s1['verdict']:<7} recompute "
        f"{s1['recompute_s']:.2f} s vs floor {s1['floor_s']:.3f} s (aggregate "
        f"{s1['sql_aggregate_s']:.3f} + rewrite {s1['sql_rewrite_s']:.3f}); "
        f"{s1['recompute_cpu_s']:.1f} s CPU in Python; "
        f"{s1['assessments']:,} assessments, {s1['result_node_rows']:,} result rows"
    )
    for c in s1["checked_against_sql"]:
        print(
            f"   {c['framework_id']}{' (OPD)' if c['internal'] else ''}: {c['assessments']:,} "
            f"index, self and verified values checked against SQL, {c['differing']} differ"
        )
    one, ten = s1["latest_period_process"], s1["all_periods_process"]
    print(
        f"   cerdas recompute --period {LATEST}: {one['seconds']:.1f} s, peak "
        f"{one['peak_rss_mib']:.0f} MiB; --all (ten years): {ten['seconds']:.1f} s, peak "
        f"{ten['peak_rss_mib']:.0f} MiB (x{s1['rss_ten_over_one_period']:.2f}, target 1 ± 0.1 "
        f"{s1['rss_verdict']}); "
        f"{s1['all_periods_differing']} of every period's indices differ from SQL"
    )


def print_live(report: dict[str, Any]) -> None:
    for shape in ("_all_in_one", ""):
        s2, s3 = report[f"S2{shape}"], report[f"S3{shape}"]
        s2.setdefault("target", "(figures)")
        s2.setdefault("verdict", "")
        s3.setdefault("target", "(figures)")
        s3.setdefault("verdict", "")
        print(
            f"S2 {s2['ratio']:8.2f}  target {s2['target']:<7} {s2['verdict']:<7} push → fresh "
            f"p50 {s2['push_p50_ms']:.0f} ms, p99 {s2['push_p99_ms']:.0f} ms ({s2['pushes']:,} "
            f"pushes by {s2['clients']} clients) vs no-op job p50 {s2['noop_p50_ms']:.0f} ms, "
            f"p99 {s2['noop_p99_ms']:.0f} ms{' (all in one process)' if shape else ''}"
        )
        print(
            f"S3 {s3['ratio']:8.3f}  target {s3['target']:<7} {s3['verdict']:<7} "
            f"{s3['cerdas_rps']:,.0f} req/s (p99 {s3['cerdas_p99_ms']:.0f} ms) vs bare "
            f"{s3['bare_rps']:,.0f} req/s under the pushes; ranking miss p50 "
            f"{s3['ranking_miss_p50_ms']:.1f} ms, p99 {s3['ranking_miss_p99_ms']:.1f} ms, hit "
            f"p99 {s3['ranking_hit_p99_ms']:.1f} ms{' (all in one process)' if shape else ''}"
        )
        if "server_cpu_per_read_us" in s3:
            windows = s3["server_cpu_s"]
            print(
                f"   server CPU: {windows['cerdas_window']:.2f} s in Cerdas's window, "
                f"{windows['bare_window']:.2f} s in the bare app's; "
                f"{s3['server_cpu_per_read_us']:,.0f} µs per read; results cache: "
                f"{s3.get('cache_reads', 'not counted')}"
            )


if __name__ == "__main__":
    asyncio.run(main())
