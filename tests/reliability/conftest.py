"""The reliability suite's own servers and processes, independent of TEST_DATABASE_URL.

One cluster per session: an embedded Postgres and a Redis that the scenarios stop and start, the
API as a ``cerdas serve`` subprocess and ``cerdas worker`` processes. Every scenario leaves it
running (or the ``healthy_cluster`` fixture brings it back); everything is killed at the end, and
each scenario's ledger is printed and written to ``<pytest basetemp>/reliability-ledger.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Cerdas, Database, Postgres, Redis, cleanup_on_exit

LEDGERS: list[dict[str, Any]] = []
_LEDGER_FILE: list[Path] = []


@dataclass
class Ledger:
    """What clients were told was accepted, and what the database shows afterwards."""

    scenario: str
    trials: int = 0
    accepted: int = 0
    lost: int = 0
    duplicated: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    lost_examples: list[str] = field(default_factory=list)
    duplicated_examples: list[str] = field(default_factory=list)

    def lose(self, what: str) -> None:
        self.lost += 1
        if len(self.lost_examples) < 5:
            self.lost_examples.append(what)

    def duplicate(self, what: str) -> None:
        self.duplicated += 1
        if len(self.duplicated_examples) < 5:
            self.duplicated_examples.append(what)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"{self.scenario}: trials={self.trials} accepted={self.accepted} lost={self.lost} "
            f"duplicated={self.duplicated}" + (f" {extra}" if extra else "")
        )

    def record(self) -> None:
        """Print the ledger line and keep it for the session's JSON file (before asserting)."""
        print("\n" + self.line())
        for example in self.lost_examples:
            print(f"  lost: {example}")
        for example in self.duplicated_examples:
            print(f"  duplicated: {example}")
        LEDGERS.append(
            {
                "scenario": self.scenario,
                "trials": self.trials,
                "accepted": self.accepted,
                "lost": self.lost,
                "duplicated": self.duplicated,
                "notes": self.notes,
                "lost_examples": self.lost_examples,
                "duplicated_examples": self.duplicated_examples,
            }
        )
        if _LEDGER_FILE:
            _LEDGER_FILE[0].write_text(json.dumps(LEDGERS, indent=2, default=str))


@dataclass
class Cluster:
    postgres: Postgres
    redis: Redis
    cerdas: Cerdas
    db: Database
    keys: dict[str, dict[str, str]]
    regions: list[str]  # kabupaten/kota codes, for pushes that touch many assessments


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("reliability")
    _LEDGER_FILE[:] = [tmp_path_factory.getbasetemp() / "reliability-ledger.json"]
    postgres, redis = Postgres(root), Redis(root)
    data_dir = root / "data"
    data_dir.mkdir()
    cerdas = Cerdas(postgres, redis, data_dir)
    with cleanup_on_exit(cerdas.stop_all, redis.stop, postgres.stop):
        postgres.init()
        redis.start()
        cerdas.start_api(timeout=120)  # the first start migrates
        keys = {
            "super-app": cerdas.create_key("super-app", "32.71"),
            "ministry-admin": cerdas.create_key("ministry-admin"),
        }
        db = Database(postgres.url)
        regions = [
            row[0]
            for row in db.fetch("SELECT code FROM region WHERE kind <> 'provinsi' ORDER BY code")
        ]
        print(f"\nreliability cluster: data in {root}, API on port {cerdas.port}")
        yield Cluster(postgres, redis, cerdas, db, keys, regions)


@pytest.fixture
def healthy_cluster(cluster: Cluster) -> Cluster:
    """The cluster with every server up and the API serving, whatever the last scenario did."""
    if not cluster.postgres.running:
        cluster.postgres.start()
    if cluster.redis.process is None or cluster.redis.process.poll() is not None:
        cluster.redis.start()
    cluster.cerdas.kill_workers()
    if cluster.cerdas.api is None or cluster.cerdas.api.poll() is not None:
        cluster.cerdas.start_api()
    return cluster


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LEDGERS:
        return
    terminalreporter.section("reliability ledgers")
    for entry in LEDGERS:
        ledger = Ledger(
            entry["scenario"],
            entry["trials"],
            entry["accepted"],
            entry["lost"],
            entry["duplicated"],
            entry["notes"],
        )
        terminalreporter.write_line(ledger.line())
    if _LEDGER_FILE:
        terminalreporter.write_line(f"(written to {_LEDGER_FILE[0]})")
