"""The production topology on one machine: `cerdas migrate` once, two `cerdas serve gateway`
processes, one `cerdas serve ingest`, two `cerdas worker` processes, one Postgres and one Redis.

Super-apps push through ingest, dashboards read through both gateways, and one worker is killed
with SIGKILL in the middle of a national recompute run: the run completes, every assessment is
computed at its final revision, and the stored results equal a serial computation.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import pytest

from tests.reliability.conftest import Cluster, Ledger
from tests.reliability.harness import (
    CERDAS,
    free_port,
    json_body,
    kill_group,
    send,
    wait_until,
)
from tests.reliability.test_reliability import Point, assert_ledger, check_points

pytestmark = pytest.mark.reliability

PAIRS = 800  # (region, month) pairs pushed: two points each, a view per region and year
SETTLE_SECONDS = 120.0


def cpu_seconds_over(process: subprocess.Popen[bytes], window: float = 0.15) -> float:
    """CPU seconds ``process`` used during the next ``window`` seconds."""
    handle = psutil.Process(process.pid)
    before = sum(handle.cpu_times()[:2])
    time.sleep(window)
    return float(sum(handle.cpu_times()[:2]) - before)


@dataclass
class Topology:
    cluster: Cluster
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def spawn(self, name: str, *args: str, port: int | None = None) -> subprocess.Popen[bytes]:
        cerdas = self.cluster.cerdas
        env = cerdas.env() | ({"PORT": str(port)} if port else {})
        log = (cerdas.data_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [str(CERDAS), *args], env=env, stdout=log, stderr=log, start_new_session=True
        )
        self.processes[name] = process
        if port:
            self.ports[name] = port
        return process

    def serve(self, name: str, service: str) -> None:
        port = free_port()
        process = self.spawn(name, "serve", service, port=port)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {self.log(name)}")
            return send(port, "GET", "/readyz", timeout=2).status == 200

        wait_until(ready, 60, f"{name} ready")

    def log(self, name: str) -> str:
        path = self.cluster.cerdas.data_dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            kill_group(process)


@pytest.fixture
def topology(healthy_cluster: Cluster) -> Iterator[Topology]:
    # The cluster's all-in-one `cerdas serve` (and its in-process worker) steps aside: here
    # only the production services work. `healthy_cluster` brings it back for the next test.
    healthy_cluster.cerdas.stop_all()
    topology = Topology(healthy_cluster)
    try:
        yield topology
    finally:
        topology.stop()


def test_two_gateways_one_ingest_two_workers_one_killed_mid_run(topology: Topology) -> None:
    cluster = topology.cluster
    ledger = Ledger("production-topology")
    migrated = subprocess.run(
        [str(CERDAS), "migrate"], env=cluster.cerdas.env(), capture_output=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    for name, service in (("gateway-1", "gateway"), ("gateway-2", "gateway"), ("ingest", "ingest")):
        topology.serve(name, service)
    workers = [topology.spawn(f"worker-{n}", "worker") for n in (1, 2)]
    ports = topology.ports
    admin = cluster.keys["ministry-admin"]

    # Each service answers its own routes only: an ingress sends the rest elsewhere.
    assert send(ports["gateway-1"], "GET", "/v1/metrics/catalogue").status == 404
    assert send(ports["ingest"], "GET", "/v1/frameworks").status == 404
    assert send(ports["ingest"], "GET", "/v1/metrics/catalogue").status == 200

    # Super-apps push through ingest, in batches of 100 pairs (2025 and 2026: no other
    # scenario's months).
    rng = random.Random(2025)
    pairs = [(region, f"{year}-06") for year in (2025, 2026) for region in cluster.regions]
    points = []
    for region, period in rng.sample(pairs, PAIRS):
        target = rng.randint(50, 500)
        points.append(Point(region, "integrated_apps", period, rng.randint(0, target)))
        points.append(Point(region, "integrated_apps_target", period, target))
    requests = 0
    for start in range(0, len(points), 200):  # 100 pairs a request
        body, headers = json_body({"points": [p.json() for p in points[start : start + 200]]})
        pushed = send(
            ports["ingest"], "POST", "/v1/metrics:batch", headers=admin | headers, body=body
        )
        requests += 1
        assert pushed.status == 200, pushed.body
    ledger.trials = ledger.accepted = len(points)
    check_points(cluster, ledger, points)

    # A national recompute run, asked through one gateway; one worker dies in the middle of it.
    body, headers = json_body({})
    started = send(
        ports["gateway-1"], "POST", "/v1/recompute-runs", headers=admin | headers, body=body
    )
    requests += 1
    assert started.status == 202, started.body
    run_id = uuid.UUID(started.json()["id"])

    def run() -> dict[str, object]:
        row = cluster.db.fetch(
            "SELECT state, done, failed, total FROM recompute_run WHERE id = $1", run_id
        )[0]
        return dict(row)

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: int(str(run()["done"])) > 0, 60, "the run under way", 0.02)
    # SIGKILL the busier worker (the one holding the run's batch, as far as CPU time tells):
    # its batch is left half done, for the other one to take over.
    busy = max(workers, key=cpu_seconds_over)
    survivor = workers[1 - workers.index(busy)]
    kill_group(busy)
    killed = time.monotonic()
    at_kill = run()
    ledger.notes["run_at_kill"] = f"{at_kill['state']} {at_kill['done']}/{at_kill['total']}"
    wait_until(lambda: run()["state"] == "done", SETTLE_SECONDS, "the run done by the survivor")
    wait_until(lambda: cluster.db.behind() == 0, SETTLE_SECONDS, "every result at its revision")
    ledger.notes["settled_after_kill_s"] = round(time.monotonic() - killed, 1)
    final = run()
    ledger.notes["run"] = f"{final['state']} {final['done']}/{final['total']}"
    ledger.notes["assessments"] = cluster.db.value("SELECT count(*) FROM assessment")

    # Dashboards read the same figures through either gateway.
    seen = []
    for name in ("gateway-1", "gateway-2"):
        page = send(
            ports[name],
            "GET",
            "/v1/assessments?framework=smartcity-spbe-linked&limit=200",
            headers=admin,
        )
        requests += 1
        assert page.status == 200, page.body
        seen.append(sorted((item["id"], item["result"]["index"]) for item in page.json()["items"]))
    assert seen[0] == seen[1]
    assert seen[0], "no composite view was opened by the pushes"
    ledger.notes["requests"] = requests
    ledger.notes["serial_mismatches"] = len(cluster.db.serial_mismatches())

    assert at_kill["state"] != "done", "the run was over before the kill: nothing proved"
    assert final["state"] == "done", ledger.line()
    assert final["failed"] == 0, ledger.line()
    assert final["done"] == final["total"], ledger.line()
    assert survivor.poll() is None, "the surviving worker died"
    assert_ledger(ledger, settled=True)
