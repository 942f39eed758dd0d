"""The gateway's reads with the seed cases loaded: rankings, trends, summaries, exports, ETags."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import httpx
import openpyxl
import pytest
from sqlalchemy import select, update

from services.demo import service as demo
from services.domain.access.service import create_key
from services.domain.recompute.service import mark_dirty
from services.kit.runtime import Runtime
from services.models import Assessment, AssessmentInput, AuditEvent, MetricPoint
from tests.conftest import app_client

pytestmark = pytest.mark.slow


@pytest.fixture
async def seeded(live: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    await demo.load(live)
    async with app_client(live) as client:
        # Seven published seed cases and their six linked views (Kota Bekasi's IPD 2026 with
        # its 2026 view); an IPD 2026 self-assessment in review (not listed to the public) and
        # the composite view of Bogor 2026 that follows it.
        assert len((await client.get("/v1/assessments")).json()["items"]) == 14
        yield client


async def key_of(runtime: Runtime, role: str, *regions: str) -> dict[str, str]:
    async with runtime.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name=f"test {role}", role=role, regions=list(regions))
    return {"Authorization": f"Bearer {secret}"}


async def assessment_id(
    client: httpx.AsyncClient,
    framework: str,
    region: str,
    period: int,
    headers: dict[str, str] | None = None,
) -> str:
    page = (
        await client.get(
            "/v1/assessments",
            params={"framework": framework, "region": region, "period": period},
            headers=headers,
        )
    ).json()
    [item] = page["items"]
    return str(item["id"])


async def test_demo_loads_idempotently(live: Runtime) -> None:
    await demo.load(live)
    await demo.load(live)
    async with app_client(live) as client:
        assert len((await client.get("/v1/assessments")).json()["items"]) == 14


async def test_demo_never_overwrites_live_data_and_is_audited(live: Runtime) -> None:
    # Kota Bogor's SPBE 2024 is already under way, with its own values, and Bogor Single
    # Window has pushed a newer figure for the seed's metric point: the demo keeps both.
    async with live.sessionmaker() as session, session.begin():
        bogor = Assessment(region_code="32.71", framework_id="spbe-2020", period=2024)
        session.add(bogor)
        await session.flush()
        session.add(AssessmentInput(assessment_id=bogor.id, node_id="I1", self_value="2"))
        session.add(
            MetricPoint(
                region_code="32.71",
                metric="integrated_apps",
                period="2024-12",
                period_start=date(2024, 12, 1),
                year=2024,
                dimensions={},
                dimension_key="",
                value=Decimal(150),
            )
        )
    await demo.load(live)
    async with live.sessionmaker() as session:
        frameworks = (await session.scalars(select(Assessment.framework_id))).all()
    # Bogor's own SPBE 2024, the other seven cases, their six linked views and Bogor's 2026 one.
    assert sorted(frameworks) == sorted(
        ["spbe-2020"] * 3 + ["gmsc-2023"] * 3 + ["ipd-2026"] * 2 + ["smartcity-spbe-linked"] * 7
    )
    async with live.sessionmaker() as session:
        kept = await session.get(Assessment, bogor.id)
        assert kept is not None
        assert kept.state == "draft"
        values = (
            await session.scalars(
                select(AssessmentInput).where(AssessmentInput.assessment_id == bogor.id)
            )
        ).all()
        assert [(v.node_id, v.self_value, v.official_value) for v in values] == [("I1", "2", None)]
        point = await session.scalar(
            select(MetricPoint.value).where(
                MetricPoint.region_code == "32.71", MetricPoint.metric == "integrated_apps"
            )
        )
        assert point == Decimal(150)
        loaded = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "demo.load"))
        ).all()
        assert len(loaded) == 7
        assert {(e.actor_name, e.role) for e in loaded} == {("cerdas demo", "ministry-admin")}
        assert len({e.request_id for e in loaded}) == 1
        assert loaded[0].request_id


async def test_kota_bekasi_crosses_the_change_of_instrument_in_the_demo(
    seeded: httpx.AsyncClient,
) -> None:
    trend = (
        await seeded.get("/v1/trends", params={"family": "e-government", "region": "32.75"})
    ).json()
    assert trend["instruments"] == ["spbe-2020", "ipd-2026"]
    points = [
        (i["period"], i["framework"], i["index"], i["instrument_changed"]) for i in trend["items"]
    ]
    assert points == [
        (2023, "spbe-2020", "3.01", False),
        (2024, "spbe-2020", "3.83", False),
        (2026, "ipd-2026", "3.20", True),
    ]  # fmt: skip
    ipd = await assessment_id(seeded, "ipd-2026", "32.75", 2026)
    summary = (await seeded.get(f"/v1/assessments/{ipd}/summary")).json()
    # The region rated I9, I12 and I20 higher than its assessor did: 3.27 on its own values.
    assert summary["indices"] == {
        "self_assessed": {"value": "3.27", "predicate": "Baik"},
        "verified": {"value": "3.20", "predicate": "Baik"},
    }
    # Published from the indicators' own values, so it has a gap-to-target plan.
    plan = (
        await seeded.get(f"/v1/assessments/{ipd}/plan", params={"target": "Sangat Baik"})
    ).json()
    assert (plan["reachable"], plan["index"], plan["predicate"]) == (True, "3.50", "Sangat Baik")
    assert [(s["node"], s["from"], s["to"]) for s in plan["steps"]] == [
        ("I19", "3.70", "4.62"),
        ("I20", "3.62", "5.00"),
    ]


async def test_kota_bekasi_spbe_trend_and_improvement(seeded: httpx.AsyncClient) -> None:
    trend = (
        await seeded.get("/v1/trends", params={"framework": "spbe-2020", "region": "32.75"})
    ).json()
    assert trend["family"] == "e-government"
    assert trend["instruments"] == ["spbe-2020"]
    assert trend["items"] == [
        {
            "period": 2023,
            "framework": "spbe-2020",
            "index": "3.01",
            "predicate": "Baik",
            "improvement": None,
            "instrument_changed": False,
        },
        {
            "period": 2024,
            "framework": "spbe-2020",
            "index": "3.83",
            "predicate": "Sangat Baik",
            "improvement": "0.82",
            "instrument_changed": False,
        },
    ]


async def test_the_demo_shows_kota_bogor_ipd_2026_self_assessment_scored(
    seeded: httpx.AsyncClient, live: Runtime
) -> None:
    ministry = await key_of(live, "ministry-admin")
    ipd = await assessment_id(seeded, "ipd-2026", "32.71", 2026, ministry)
    tree = (await seeded.get(f"/v1/assessments/{ipd}/results", headers=ministry)).json()
    # Σ(weight × value) ÷ 100 over the demo's values, with I5, I6, I7 and I18 counted as 1:
    # 17 + 15.5 + 14.25 + 15 + 5 + 3 + 3 + 10.4 + 8.8 + 11 + 5.7 + 9.6 + 17.75 + 16.5 + 11.2
    # + 13.04 + 14.6 + 3 + 31 + 51.75 = 277.09 → 2.7709 → 2.77, Baik (2.50 ≤ x < 3.50).
    assert (tree["result"]["index"], tree["result"]["predicate"]) == ("2.77", "Baik")
    nodes = {node["id"]: node for node in tree["nodes"]}
    assert nodes["I5"]["value"] == "1.00"
    assert nodes["I5"]["note"] == "no value from Bappenas (Satu Data Indonesia) yet: counted as 1"
    assert nodes["I16"]["value"] == "3.26"
    # In review: not the public's to see.
    assert (await seeded.get(f"/v1/assessments/{ipd}/results")).status_code == 404


async def test_jawa_barat_spbe_ranking_with_movement(seeded: httpx.AsyncClient) -> None:
    ranking = (
        await seeded.get(
            "/v1/rankings", params={"framework": "spbe-2020", "period": 2024, "province": "32"}
        )
    ).json()
    assert [(i["rank"], i["region"], i["index"]) for i in ranking["items"]] == [
        (1, "32.75", "3.83"),
        (2, "32.71", "3.72"),
    ]
    bekasi = ranking["items"][0]
    assert (bekasi["previous_rank"], bekasi["movement"], bekasi["improvement"]) == (1, 0, "0.82")


async def test_a_tie_shares_the_rank(seeded: httpx.AsyncClient, live: Runtime) -> None:
    async with live.sessionmaker() as session, session.begin():
        bandung = Assessment(
            region_code="32.73", framework_id="spbe-2020", period=2024, state="published"
        )
        session.add(bandung)
        await session.flush()
        # Its published index, imported from the results letter.
        session.add(
            AssessmentInput(assessment_id=bandung.id, node_id="spbe", official_value="3.72")
        )
        await mark_dirty(session, [bandung.id], None)
    await demo.settle(live)
    ranking = (
        await seeded.get("/v1/rankings", params={"framework": "spbe-2020", "period": 2024})
    ).json()
    assert [(i["rank"], i["region"]) for i in ranking["items"]] == [
        (1, "32.75"),
        (2, "32.71"),
        (2, "32.73"),
    ]


async def test_summary_of_kabupaten_bekasi_2023(seeded: httpx.AsyncClient) -> None:
    identifier = await assessment_id(seeded, "gmsc-2023", "32.16", 2023)
    summary = (await seeded.get(f"/v1/assessments/{identifier}/summary")).json()
    assert summary["index"] == "2.81"
    assert summary["predicate"] is None
    assert [(p["id"], p["value"]) for p in summary["parts"]] == [
        ("baseline", "3.48"),
        ("output", "2.34"),
        ("outcome", "3.00"),
        ("impact", "2.70"),
        ("quickwin", "2.75"),
    ]
    assert summary["rank"] == {"national": 1, "of_national": 1, "province": 1, "of_province": 1}


async def test_kota_bogor_2024_linked_view_and_explained_tree(seeded: httpx.AsyncClient) -> None:
    identifier = await assessment_id(seeded, "smartcity-spbe-linked", "32.71", 2024)
    tree = (await seeded.get(f"/v1/assessments/{identifier}/results")).json()
    nodes = {node["id"]: node for node in tree["nodes"]}
    assert tree["result"]["index"] == "70.85"
    assert nodes["app_integration"]["value"] == "45.26"
    assert nodes["app_integration"]["inputs"] == [
        "metric:integrated_apps",
        "metric:integrated_apps_target",
    ]
    # Read anonymously, as the published value they make: Bogor Single Window's 148 of 327.
    assert nodes["app_integration"]["metrics"] == {
        "integrated_apps": "148",
        "integrated_apps_target": "327",
    }
    assert nodes["smart_city_index"]["metrics"] == {}
    assert nodes["smart_city_index"]["inputs"] == ["linked:gmsc-2023/final"]
    assert nodes["spbe_index"]["value"] == "68.00"
    assert nodes["spbe_index"]["contribution"] == "27.2000"
    assert tree["stale"] is False
    assert nodes["linked_index"]["input_revision"] == tree["input_revision"]


async def test_kebumen_completion_in_the_results(seeded: httpx.AsyncClient) -> None:
    identifier = await assessment_id(seeded, "gmsc-2023", "33.05", 2022)
    tree = (await seeded.get(f"/v1/assessments/{identifier}/results")).json()
    nodes = {node["id"]: node["value"] for node in tree["nodes"]}
    assert [
        nodes[f"{d}.completion"]
        for d in ("governance", "living", "branding", "society", "economy", "environment")
    ] == ["100.00", "90.00", "85.71", "100.00", "83.33", "100.00"]


async def test_dashboard_counts_predicates_and_coverage(seeded: httpx.AsyncClient) -> None:
    board = (
        await seeded.get(
            "/v1/dashboard", params={"framework": "spbe-2020", "period": 2024, "province": "32"}
        )
    ).json()
    assert board["predicates"] == {"Sangat Baik": 2}
    assert board["index"] == {"mean": "3.78", "median": "3.78", "min": "3.72", "max": "3.83"}
    assert board["coverage"] == {"with_results": 2, "regions": 27, "percent": "7.41"}


async def test_compare_regions_node_by_node(seeded: httpx.AsyncClient) -> None:
    compared = (
        await seeded.get(
            "/v1/compare",
            params={"framework": "spbe-2020", "period": 2024, "regions": "32.71,32.75"},
        )
    ).json()
    spbe = next(node for node in compared["nodes"] if node["id"] == "spbe")
    assert spbe["values"] == {
        "32.71": {"value": "3.72", "predicate": "Sangat Baik"},
        "32.75": {"value": "3.83", "predicate": "Sangat Baik"},
    }


async def test_etag_gives_304_and_changes_after_a_recompute(
    seeded: httpx.AsyncClient, live: Runtime
) -> None:
    params = {"framework": "spbe-2020", "period": 2024}
    first = await seeded.get("/v1/rankings", params=params)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    again = await seeded.get("/v1/rankings", params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    async with live.sessionmaker() as session, session.begin():
        bogor = await session.scalar(
            select(Assessment.id).where(
                Assessment.framework_id == "spbe-2020",
                Assessment.region_code == "32.71",
                Assessment.period == 2024,
            )
        )
        await session.execute(
            update(AssessmentInput)
            .where(AssessmentInput.assessment_id == bogor)
            .values(official_value="3.90")
        )
        await mark_dirty(session, [bogor], None)
    await demo.settle(live)
    changed = await seeded.get("/v1/rankings", params=params, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    leader = changed.json()["items"][0]
    assert (leader["rank"], leader["region"], leader["index"]) == (1, "32.71", "3.90")


async def test_csv_and_xlsx_exports_hold_the_json_values(seeded: httpx.AsyncClient) -> None:
    params = {"framework": "spbe-2020", "period": 2024}
    items = (await seeded.get("/v1/rankings", params=params)).json()["items"]
    exported = await seeded.get("/v1/rankings/export", params={**params, "lang": "id"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [
        (r["Peringkat"], r["Kode wilayah"], r["Indeks"], r["Tingkat improvement"]) for r in rows
    ] == [(str(i["rank"]), i["region"], i["index"], i["improvement"] or "") for i in items]
    workbook = await seeded.get("/v1/rankings/export", params={**params, "format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).active
    assert sheet is not None
    header, *cells = list(sheet.iter_rows(values_only=True))
    assert header[:5] == ("Rank", "Region code", "Region", "Province code", "Index")
    assert [(row[1], Decimal(str(row[4]))) for row in cells] == [
        (i["region"], Decimal(i["index"])) for i in items
    ]


async def test_bad_filters_are_404_or_422(seeded: httpx.AsyncClient) -> None:
    unknown_framework = await seeded.get(
        "/v1/rankings", params={"framework": "gmsc-1999", "period": 2024}
    )
    assert unknown_framework.status_code == 404
    assert unknown_framework.headers["content-type"] == "application/problem+json"
    unknown_region = await seeded.get(
        "/v1/trends", params={"framework": "spbe-2020", "region": "99.99"}
    )
    assert unknown_region.status_code == 404
    bad_period = await seeded.get(
        "/v1/rankings", params={"framework": "spbe-2020", "period": "tahun lalu"}
    )
    assert bad_period.status_code == 422
    assert bad_period.json()["errors"][0]["pointer"] == "/period"


async def test_framework_tree_labels_everything(seeded: httpx.AsyncClient) -> None:
    spbe = (await seeded.get("/v1/frameworks/spbe-2020")).json()
    root = spbe["trees"][0]
    assert [band["predicate"] for band in root["predicates"]] == [
        "Kurang",
        "Cukup",
        "Baik",
        "Sangat Baik",
        "Memuaskan",
    ]
    assert [(d["id"], d["weight"]) for d in root["children"]] == [
        ("D1", "13"),
        ("D2", "25"),
        ("D3", "16.5"),
        ("D4", "45.5"),
    ]
    i1 = root["children"][0]["children"][0]["children"][0]
    assert i1["scale"]["labels"]["5"] == "Optimum"


async def test_a_correction_takes_a_result_out_of_public_rankings_at_once(
    seeded: httpx.AsyncClient, live: Runtime
) -> None:
    params = {"framework": "spbe-2020", "period": 2024}
    before = (await seeded.get("/v1/rankings", params=params)).json()["items"]
    assert [item["region"] for item in before] == ["32.75", "32.71"]
    async with live.sessionmaker() as session, session.begin():
        _, secret = await create_key(session, name="KemenPANRB", role="ministry-admin", regions=[])
    bekasi = await assessment_id(seeded, "spbe-2020", "32.75", 2024)
    reopened = await seeded.post(
        f"/v1/assessments/{bekasi}/transitions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"to": "in_review", "reason": "Keberatan atas nilai I44"},
    )
    assert reopened.status_code == 200, reopened.text
    after = (await seeded.get("/v1/rankings", params=params)).json()["items"]
    assert [item["region"] for item in after] == ["32.71"]  # no stale cached ranking
    assert (await seeded.get(f"/v1/assessments/{bekasi}/summary")).status_code == 404
