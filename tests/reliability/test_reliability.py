"""An answer means committed; accepted data is never lost: proved by breaking real processes.

Each scenario keeps a ledger of what clients were told was accepted (a 2xx) and checks it against
the database afterwards: accepted = stored exactly once (lost = 0, duplicated = 0). Where inputs
feed scores, the system must also settle: every touched assessment's results at its final input
revision, with the index a serial scoring of the final inputs gives.

Run: ``.venv/bin/pytest -m reliability -s`` (docs/reliability.md). Bounded: the constants below
keep the whole suite to a few minutes on two cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.reliability.conftest import Cluster, Ledger
from tests.reliability.harness import (
    Answer,
    json_body,
    kill_group,
    multipart,
    send,
    send_and_kill_on_answer,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KILL_TRIALS = 4  # kill-on-answer trials per write kind
LOAD_CLIENTS = 8  # concurrent clients while the API is killed
API_KILLS = 3  # API SIGKILLs during the load
KILL_INTERVAL = 4.0  # seconds of load between kills
REDIS_OUTAGE = 20.0  # seconds Redis is down under load
PG_OUTAGE = 8.0  # seconds Postgres is down under load
OUTAGE_CLIENTS = 4
SETTLE_SECONDS = 60.0  # bound for results to reach the final revision once everything is up
WORKER_RUN_PAIRS = 300  # (region, month) pairs in the push before the worker is killed
RETRY_FOR = 45.0  # how long a client keeps retrying one request (same Idempotency-Key)

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


# --- metric points and their ledger -------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    region: str
    metric: str
    period: str
    value: int
    dimension_key: str = ""

    def json(self) -> dict[str, Any]:
        point: dict[str, Any] = {
            "region": self.region,
            "metric": self.metric,
            "period": self.period,
            "value": self.value,
        }
        if self.dimension_key:
            name, value = self.dimension_key.split("=", 1)
            point["dimensions"] = {name: value}
        return point


class UniqueCombos:
    """(region, month) pairs never pushed before in this session, shared by all clients:
    integrated_apps and its target for each, so every point is new and feeds a score."""

    def __init__(self, regions: list[str]) -> None:
        self._lock = threading.Lock()
        self._combos = [
            (region, f"{year}-{month:02d}")
            for year in (2021, 2022, 2023, 2024)
            for month in range(1, 13)
            for region in regions
        ]
        random.Random(7).shuffle(self._combos)

    def take(self, count: int) -> list[Point]:
        with self._lock:
            taken, self._combos = self._combos[:count], self._combos[count:]
        assert len(taken) == count, "out of unique (region, month) pairs"
        points = []
        for region, period in taken:
            target = random.randint(50, 500)
            points.append(Point(region, "integrated_apps", period, random.randint(0, target)))
            points.append(Point(region, "integrated_apps_target", period, target))
        return points


@pytest.fixture(scope="module")
def combos(cluster: Cluster) -> UniqueCombos:
    return UniqueCombos(cluster.regions)


def service_point() -> Point:
    """A point for Kota Bogor nobody else pushes (a fresh dimension value each time)."""
    return Point(
        "32.71",
        "service_response_time",
        "2024-06",
        random.randint(1, 8000),
        f"service=rel-{uuid.uuid4().hex[:16]}",
    )


def check_points(cluster: Cluster, ledger: Ledger, accepted: list[Point]) -> None:
    """Every accepted point stored once with its value (lost / duplicated otherwise)."""
    if not accepted:
        return
    rows = cluster.db.fetch(
        """SELECT region_code, metric, period, dimension_key, value FROM metric_point
           WHERE region_code = ANY($1::text[])""",
        sorted({p.region for p in accepted}),
    )
    stored: dict[tuple[str, str, str, str], list[Any]] = {}
    for row in rows:
        key = (row["region_code"], row["metric"], row["period"], row["dimension_key"])
        stored.setdefault(key, []).append(row["value"])
    for point in accepted:
        values = stored.get((point.region, point.metric, point.period, point.dimension_key), [])
        if not values or values[0] != point.value:
            ledger.lose(f"{point} (stored: {values})")
        elif len(values) > 1:
            ledger.duplicate(f"{point} stored {len(values)} times")


def touched_assessments(cluster: Cluster, points: list[Point]) -> list[uuid.UUID]:
    regions = sorted({p.region for p in points})
    years = sorted({int(p.period[:4]) for p in points})
    rows = cluster.db.fetch(
        "SELECT id FROM assessment WHERE region_code = ANY($1::text[]) AND period = ANY($2::int[])",
        regions,
        years,
    )
    return [row["id"] for row in rows]


def check_settled(cluster: Cluster, ledger: Ledger, points: list[Point], since: float) -> None:
    """Wait for the touched assessments to be computed at their final revision; compare with a
    serial scoring of the final inputs. Records the figures in the ledger's notes."""
    ids = touched_assessments(cluster, points)
    ledger.notes["assessments"] = len(ids)
    try:
        wait_until(lambda: cluster.db.behind(ids) == 0, SETTLE_SECONDS, "results settled", 0.25)
        ledger.notes["settled_s"] = round(time.monotonic() - since, 1)
    except TimeoutError:
        ledger.notes["settled_s"] = f">{SETTLE_SECONDS:.0f}"
        ledger.notes["behind"] = cluster.db.behind(ids)
    mismatches = cluster.db.serial_mismatches(ids)
    ledger.notes["serial_mismatches"] = len(mismatches)
    for mismatch in mismatches[:3]:
        print(f"  not as serial: {mismatch}")


def assert_ledger(ledger: Ledger, *, settled: bool = False) -> None:
    ledger.record()
    assert ledger.accepted > 0, "nothing was accepted: the scenario proved nothing"
    assert ledger.lost == 0, ledger.line()
    assert ledger.duplicated == 0, ledger.line()
    if settled:
        assert "behind" not in ledger.notes, f"results not at the final revision: {ledger.line()}"
        assert ledger.notes["serial_mismatches"] == 0, ledger.line()


# --- load clients -------------------------------------------------------------------------------


@dataclass
class LoadClients:
    """Threads pushing fresh points in batches with an Idempotency-Key, retrying a batch with the
    same key on a connection error or a 5xx until it is answered 2xx (or RETRY_FOR passes)."""

    cluster: Cluster
    combos: UniqueCombos
    clients: int
    batch_pairs: int = 3
    accepted: list[Point] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    events: list[tuple[float, str]] = field(default_factory=list)  # (time, outcome)
    replayed: int = 0
    abandoned: int = 0
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"client-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RETRY_FOR + 30)

    def _note(self, outcome: str) -> None:
        with self._lock:
            self.statuses[outcome] += 1
            self.events.append((time.monotonic(), outcome))

    def _run(self) -> None:
        key = self.cluster.keys["ministry-admin"]
        while not self._stop.is_set():
            points = self.combos.take(self.batch_pairs)
            body, headers = json_body({"points": [p.json() for p in points]})
            headers |= key | {"Idempotency-Key": uuid.uuid4().hex}
            started = time.monotonic()
            with self._lock:
                self.requests += 1
            while True:
                try:
                    answer = send(
                        self.cluster.cerdas.port,
                        "POST",
                        "/v1/metrics:batch",
                        headers=headers,
                        body=body,
                        timeout=15,
                    )
                except OSError as exc:
                    self._note(f"conn:{type(exc).__name__}")
                else:
                    self._note(str(answer.status))
                    if is_2xx(answer.status):
                        with self._lock:
                            self.accepted.extend(points)
                            self.replayed += answer.headers.get("idempotent-replayed") == "true"
                        break
                    if answer.status < 500:
                        print(f"  unexpected {answer.status}: {answer.body[:300]!r}")
                        break
                if time.monotonic() - started > RETRY_FOR:
                    with self._lock:
                        self.abandoned += 1
                    break
                time.sleep(0.2)

    def outcomes_between(self, start: float, end: float) -> Counter[str]:
        with self._lock:
            return Counter(outcome for at, outcome in self.events if start <= at < end)


# --- scenario 1: kill on answer -----------------------------------------------------------------


@dataclass
class KillOnAnswer:
    """Send one write, SIGKILL the API the moment a 2xx status line arrives, restart it."""

    cluster: Cluster
    ledger: Ledger

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        cerdas = self.cluster.cerdas
        if cerdas.api is None or cerdas.api.poll() is not None:
            cerdas.start_api()
        self.ledger.trials += 1
        status = send_and_kill_on_answer(
            cerdas.port, method, path, cerdas.kill_api, headers=headers, body=body
        )
        if not is_2xx(status):
            print(f"  {method} {path}: answered {status}, not accepted")
            return False
        assert cerdas.api is not None
        assert cerdas.api.poll() is not None, "the API was not killed"
        self.ledger.accepted += 1
        cerdas.start_api()  # the checks read the database, but the next trial needs the API
        return True


def open_spbe_assessment(cluster: Cluster, period: int) -> str:
    """A Kota Bogor SPBE assessment moved to in_review by the ministry admin."""
    admin = cluster.keys["ministry-admin"]
    body, headers = json_body({"region": "32.71", "framework": "spbe-2020", "period": period})
    opened = cluster.cerdas.request("POST", "/v1/assessments", headers=admin | headers, body=body)
    assert opened.status == 201, opened.body
    assessment_id = str(opened.json()["id"])
    for to in ("submitted", "in_review"):
        body, headers = json_body({"to": to})
        moved = cluster.cerdas.request(
            "POST",
            f"/v1/assessments/{assessment_id}/transitions",
            headers=admin | headers,
            body=body,
        )
        assert moved.status == 200, moved.body
    return assessment_id


def audit_count(cluster: Cluster, request_id: str) -> int:
    return int(
        cluster.db.value("SELECT count(*) FROM audit_event WHERE request_id = $1", request_id)
    )


def test_kill_on_answer(healthy_cluster: Cluster) -> None:
    """For each write kind: the API is SIGKILLed the moment the 2xx status line arrives, and
    after a restart the write is in the database, once."""
    cluster = healthy_cluster
    admin, operator = cluster.keys["ministry-admin"], cluster.keys["super-app"]
    ledgers: list[Ledger] = []

    # metrics:batch without Idempotency-Key
    ledger = Ledger("kill-on-answer metrics:batch")
    trial, accepted = KillOnAnswer(cluster, ledger), []
    for _ in range(KILL_TRIALS):
        point = service_point()
        body, headers = json_body({"points": [point.json()]})
        if trial.send("POST", "/v1/metrics:batch", operator | headers, body):
            accepted.append(point)
    check_points(cluster, ledger, accepted)
    ledgers.append(ledger)

    # metrics:batch with Idempotency-Key, retried after the restart: a replay, not a second run
    ledger = Ledger("kill-on-answer metrics:batch+Idempotency-Key")
    trial, accepted = KillOnAnswer(cluster, ledger), []
    for _ in range(KILL_TRIALS):
        point, key = service_point(), uuid.uuid4().hex
        body, headers = json_body({"points": [point.json()]})
        headers |= operator | {"Idempotency-Key": key}
        if trial.send("POST", "/v1/metrics:batch", headers, body):
            accepted.append(point)
            retry = cluster.cerdas.request("POST", "/v1/metrics:batch", headers=headers, body=body)
            records = cluster.db.value(
                "SELECT count(*) FROM idempotency_record WHERE key = $1", key
            )
            if retry.status != 200 or retry.headers.get("idempotent-replayed") != "true":
                ledger.duplicate(f"retry of key {key} answered {retry.status} without replay")
            elif records != 1:
                ledger.duplicate(f"key {key}: {records} idempotency records")
    check_points(cluster, ledger, accepted)
    ledgers.append(ledger)

    # metrics:import (CSV)
    ledger = Ledger("kill-on-answer metrics:import")
    trial, accepted = KillOnAnswer(cluster, ledger), []
    for _ in range(KILL_TRIALS):
        points = [service_point() for _ in range(3)]
        csv = "region,metric,period,value,dimensions\n" + "".join(
            f"{p.region},{p.metric},{p.period},{p.value},{p.dimension_key}\n" for p in points
        )
        headers = operator | {"Content-Type": "text/csv"}
        if trial.send("POST", "/v1/metrics:import", headers, csv.encode()):
            accepted += points
    check_points(cluster, ledger, accepted)
    ledgers.append(ledger)

    assessment_id = open_spbe_assessment(cluster, 2022)

    # evidence upload: the rows and the file on disk
    ledger = Ledger("kill-on-answer evidence")
    trial = KillOnAnswer(cluster, ledger)
    evidence_dir = cluster.cerdas.data_dir / "evidence"
    for n in range(KILL_TRIALS):
        content = PDF + f"% reliability {uuid.uuid4()}\n".encode()
        sha256 = hashlib.sha256(content).hexdigest()
        body, headers = multipart(
            {"assessment_id": assessment_id, "node_ids": "I1", "title": f"bukti {n}"},
            "file",
            f"bukti-{n}.pdf",
            content,
            "application/pdf",
        )
        if not trial.send("POST", "/v1/evidence", operator | headers, body):
            continue
        revisions = cluster.db.value(
            "SELECT count(*) FROM evidence_revision WHERE sha256 = $1", sha256
        )
        storage_key = cluster.db.value(
            "SELECT storage_key FROM evidence_object WHERE sha256 = $1", sha256
        )
        stored = evidence_dir / storage_key if storage_key else None
        if not revisions or stored is None:
            ledger.lose(f"evidence {sha256[:12]}: {revisions} revisions, object {storage_key}")
        elif not stored.exists() or stored.read_bytes() != content:
            ledger.lose(f"evidence {sha256[:12]}: row present, file {stored} missing or different")
        elif revisions > 1:
            ledger.duplicate(f"evidence {sha256[:12]}: {revisions} revisions")
    ledgers.append(ledger)

    # PUT inputs: the verified value, one audit event, the revision bumped once
    ledger = Ledger("kill-on-answer inputs")
    trial = KillOnAnswer(cluster, ledger)
    for n in range(KILL_TRIALS):
        level, request_id = 1 + n % 5, f"rel-{uuid.uuid4().hex}"
        before = cluster.db.value(
            "SELECT input_revision FROM assessment WHERE id = $1", uuid.UUID(assessment_id)
        )
        body, headers = json_body({"values": {"I1": level}})
        headers |= admin | {"X-Request-ID": request_id}
        if not trial.send("PUT", f"/v1/assessments/{assessment_id}/inputs", headers, body):
            continue
        row = cluster.db.fetch(
            """SELECT i.verified_value, a.input_revision FROM assessment a
               LEFT JOIN assessment_input i ON i.assessment_id = a.id AND i.node_id = 'I1'
               WHERE a.id = $1""",
            uuid.UUID(assessment_id),
        )[0]
        events = audit_count(cluster, request_id)
        if events == 0 or row["verified_value"] != f'"{level}"':
            ledger.lose(f"I1={level}: stored {row['verified_value']}, {events} audit events")
        elif events > 1 or row["input_revision"] != before + 1:
            ledger.duplicate(
                f"I1={level}: {events} audit events, revision {before} → {row['input_revision']}"
            )
    ledgers.append(ledger)

    # transitions: in_review ⇄ verified
    ledger = Ledger("kill-on-answer transitions")
    trial = KillOnAnswer(cluster, ledger)
    for _ in range(KILL_TRIALS):
        state = cluster.db.value(
            "SELECT state FROM assessment WHERE id = $1", uuid.UUID(assessment_id)
        )
        to = "verified" if state == "in_review" else "in_review"
        request_id = f"rel-{uuid.uuid4().hex}"
        body, headers = json_body({"to": to})
        headers |= admin | {"X-Request-ID": request_id}
        if not trial.send("POST", f"/v1/assessments/{assessment_id}/transitions", headers, body):
            continue
        now = cluster.db.value(
            "SELECT state FROM assessment WHERE id = $1", uuid.UUID(assessment_id)
        )
        events = audit_count(cluster, request_id)
        if now != to or events == 0:
            ledger.lose(f"{state} → {to}: state is {now}, {events} audit events")
        elif events > 1:
            ledger.duplicate(f"{state} → {to}: {events} audit events")
    ledgers.append(ledger)

    for ledger in ledgers:
        ledger.record()
    failing = [ledger.line() for ledger in ledgers if ledger.lost or ledger.duplicated]
    assert not failing, "\n".join(failing)
    assert all(ledger.accepted for ledger in ledgers), "a write kind was never accepted"


# --- scenario 2: API killed under load ----------------------------------------------------------


def test_api_killed_repeatedly_under_load(healthy_cluster: Cluster, combos: UniqueCombos) -> None:
    """8 clients push fresh points while the API is SIGKILLed and restarted; clients retry with
    the same Idempotency-Key. Every 2xx is stored once; results settle as a serial run."""
    cluster = healthy_cluster
    ledger = Ledger("api-killed-under-load")
    load = LoadClients(cluster, combos, LOAD_CLIENTS)
    load.start()
    restarts: list[float] = []
    restart_error: Exception | None = None
    try:
        for _ in range(API_KILLS):
            time.sleep(KILL_INTERVAL)
            cluster.cerdas.kill_api()
            time.sleep(0.5)
            restarts.append(round(cluster.cerdas.start_api(), 1))
        time.sleep(KILL_INTERVAL)
    except Exception as exc:  # the ledger is still checked: what was accepted must be there
        restart_error = exc
    finally:
        load.stop()
    since = time.monotonic()
    ledger.trials = load.requests
    ledger.accepted = len(load.accepted)
    ledger.notes |= {
        "kills": API_KILLS,
        "replayed": load.replayed,
        "abandoned": load.abandoned,
        "statuses": dict(load.statuses),
        "restart_s": restarts,
    }
    if restart_error is not None:
        ledger.notes["restart_error"] = repr(restart_error)[-300:]
    check_points(cluster, ledger, load.accepted)
    check_settled(cluster, ledger, load.accepted, since)
    assert_ledger(ledger, settled=True)
    assert restart_error is None, f"the API did not restart: {restart_error}"


# --- scenario 3: Redis down under load ----------------------------------------------------------


def test_redis_outage_under_load(healthy_cluster: Cluster, combos: UniqueCombos) -> None:
    """Redis is stopped for 20 s while clients push (and a separate worker runs): writes are
    still accepted, and once Redis is back every touched assessment is recomputed."""
    cluster = healthy_cluster
    ledger = Ledger("redis-outage")
    cluster.cerdas.start_worker()
    load = LoadClients(cluster, combos, OUTAGE_CLIENTS)
    load.start()
    try:
        time.sleep(3)
        cluster.redis.stop()
        down = time.monotonic()
        time.sleep(REDIS_OUTAGE)
        cluster.redis.start()
        up = time.monotonic()
        time.sleep(3)
    finally:
        load.stop()
    during = load.outcomes_between(down + 1, up)  # a request in flight at the stop may fail
    accepted_during = sum(n for outcome, n in during.items() if outcome.startswith("2"))
    refused_during = sum(n for outcome, n in during.items() if not outcome.startswith("2"))
    ledger.trials = load.requests
    ledger.accepted = len(load.accepted)
    ledger.notes |= {
        "accepted_during_outage": accepted_during,
        "refused_during_outage": refused_during,
        "statuses": dict(load.statuses),
    }
    check_points(cluster, ledger, load.accepted)
    check_settled(cluster, ledger, load.accepted, up)
    ready = cluster.cerdas.request("GET", "/readyz")
    ledger.notes["readyz_after"] = ready.status
    if isinstance(ledger.notes.get("settled_s"), float):
        print(f"  results caught up {ledger.notes['settled_s']} s after Redis came back")
    worker_alive = all(worker.poll() is None for worker in cluster.cerdas.workers)
    ledger.notes["worker_alive"] = worker_alive
    if not worker_alive:
        ledger.notes["worker_exit"] = [worker.returncode for worker in cluster.cerdas.workers]
    assert_ledger(ledger, settled=True)
    assert accepted_during > 0, ledger.line()
    assert refused_during == 0, ledger.line()
    assert worker_alive, "the separate worker died with Redis"


# --- scenario 4: worker killed mid-recompute ----------------------------------------------------


def test_worker_killed_mid_recompute(healthy_cluster: Cluster, combos: UniqueCombos) -> None:
    """A push touching many assessments and a recompute run over everything; the API (and its
    in-process worker) is killed on the push's answer, a separate worker is killed mid-work,
    another one finishes: every assessment ends at its final revision, the run done."""
    cluster = healthy_cluster
    ledger = Ledger("worker-killed-mid-recompute")
    admin = cluster.keys["ministry-admin"]
    points = combos.take(WORKER_RUN_PAIRS)
    body, headers = json_body({"points": [p.json() for p in points]})
    ledger.trials = 1
    pushed = cluster.cerdas.request(
        "POST", "/v1/metrics:batch", headers=admin | headers, body=body, timeout=60
    )
    assert pushed.status == 200, pushed.body
    ledger.accepted = len(points)
    ids = touched_assessments(cluster, points)
    # The run is requested while the in-process worker is still busy with the push's jobs, and
    # the API dies with its answer: what is left is for the separate workers.
    body, headers = json_body({})
    statuses: list[int | None] = []
    statuses.append(
        send_and_kill_on_answer(
            cluster.cerdas.port,
            "POST",
            "/v1/recompute-runs",
            cluster.cerdas.kill_api,
            headers=admin | headers,
            body=body,
        )
    )
    assert statuses == [202], statuses
    run_id = uuid.UUID(
        str(cluster.db.value("SELECT id FROM recompute_run ORDER BY created_at DESC LIMIT 1"))
    )

    def run_done() -> int:
        return int(cluster.db.value("SELECT done FROM recompute_run WHERE id = $1", run_id))

    behind_at_start, done_at_start = cluster.db.behind(), run_done()
    first = cluster.cerdas.start_worker()
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: cluster.db.behind() < behind_at_start or run_done() > done_at_start,
            30,
            "the first worker at work",
            0.05,
        )
    time.sleep(0.2)
    kill_group(first)  # SIGKILL: no chance to finish the batch
    killed = time.monotonic()
    behind_at_kill = cluster.db.behind()
    run_at_kill = cluster.db.fetch(
        "SELECT state, done, total FROM recompute_run WHERE id = $1", run_id
    )[0]
    mid_work = behind_at_kill > 0 or run_at_kill["state"] != "done"
    cluster.cerdas.start_worker()
    ledger.notes |= {
        "assessments_total": cluster.db.value("SELECT count(*) FROM assessment"),
        "behind_at_worker_start": behind_at_start,
        "run_at_worker_start": done_at_start,
        "behind_at_kill": behind_at_kill,
        "run_at_kill": f"{run_at_kill['done']}/{run_at_kill['total']}",
    }
    check_points(cluster, ledger, points)
    check_settled(cluster, ledger, points, killed)
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: (
                cluster.db.value("SELECT state FROM recompute_run WHERE id = $1", run_id) == "done"
            ),
            SETTLE_SECONDS,
            "the recompute run done",
        )
    final_run = cluster.db.fetch(
        "SELECT state, done, failed, total FROM recompute_run WHERE id = $1", run_id
    )[0]
    ledger.notes["run"] = f"{final_run['state']} {final_run['done']}/{final_run['total']}"
    ledger.notes["all_behind"] = cluster.db.behind()
    ledger.notes["touched"] = len(ids)
    assert_ledger(ledger, settled=True)
    assert mid_work, "the first worker finished before it was killed: nothing proved"
    assert final_run["state"] == "done", ledger.line()
    assert final_run["failed"] == 0, ledger.line()
    assert ledger.notes["all_behind"] == 0, ledger.line()


# --- scenario 5: Postgres restarted under load --------------------------------------------------


def test_postgres_restart_under_load(healthy_cluster: Cluster, combos: UniqueCombos) -> None:
    """Postgres crashes (immediate stop) and comes back while clients push: no 2xx is lost,
    the outage is answered with 503s or connection errors, and the same API process recovers."""
    cluster = healthy_cluster
    ledger = Ledger("postgres-restart")
    api = cluster.cerdas.api
    assert api is not None
    load = LoadClients(cluster, combos, OUTAGE_CLIENTS)
    load.start()
    try:
        time.sleep(3)
        cluster.postgres.stop("immediate")
        down = time.monotonic()
        time.sleep(PG_OUTAGE)
        cluster.postgres.start()
        up = time.monotonic()
        recovered = None
        probe: Callable[[], Answer] = lambda: cluster.cerdas.request(  # noqa: E731
            "GET", "/v1/metrics?limit=1", headers=cluster.keys["ministry-admin"]
        )
        with contextlib.suppress(TimeoutError):
            recovered = wait_until(lambda: probe().status == 200, 30, "API answers again")
        time.sleep(4)
    finally:
        load.stop()
    during = load.outcomes_between(down, up)
    after = load.outcomes_between(up, time.monotonic())
    ledger.trials = load.requests
    ledger.accepted = len(load.accepted)
    ledger.notes |= {
        "during_outage": dict(during),
        "after_restart": dict(after),
        "recovered_s": None if recovered is None else round(recovered, 1),
        "same_api_process": api is cluster.cerdas.api and api.poll() is None,
    }
    check_points(cluster, ledger, load.accepted)
    check_settled(cluster, ledger, load.accepted, up)
    assert_ledger(ledger, settled=True)
    assert ledger.notes["same_api_process"], "the API process did not survive the outage"
    assert recovered is not None, "the API did not recover without a restart"
    unexpected = {
        o: n for o, n in during.items() if not (o.startswith(("2", "conn")) or o == "503")
    }
    assert not unexpected, f"answers during the outage other than 2xx/503/conn errors: {unexpected}"
