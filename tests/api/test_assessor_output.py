"""The external assessor's output per indicator (evidence, interview, approval, catatan,
rekomendasi), who reads it when, and the self-assessed and verified index side by side."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.models import AuditEvent
from services.scoring.service import recompute
from tests.api.matrix import World, make_world

# Indicator weights of spbe-2020 (PermenPANRB 59/2020; services/scoring/frameworks/spbe-2020.yaml):
# I1–I10 1.30, I11–I20 2.50, I21–I31 1.50, I32–I41 2.75, I42–I47 3.00 (100 in all).
WEIGHTS = {
    f"I{n}": Decimal(weight)
    for first, last, weight in (
        (1, 10, "1.30"),
        (11, 20, "2.50"),
        (21, 31, "1.50"),
        (32, 41, "2.75"),
        (42, 47, "3.00"),
    )
    for n in range(first, last + 1)
}
assert sum(WEIGHTS.values()) == 100
# Σ(weight × level) = 372 (index 3.72): level 4 for I11–I21 and I32–I47, level 3 elsewhere.
LEVELS = {f"I{n}": 4 if 11 <= n <= 21 or n >= 32 else 3 for n in range(1, 48)}
RECORDED = {
    "evidence_uploaded": True,
    "interview_confirmed": True,
    "approved": False,
    "catatan": "Perwali Arsitektur SPBE masih berupa draf; belum ditetapkan.",
    "rekomendasi": "Tetapkan Perwali Arsitektur SPBE dan unggah salinannya.",
}
OUTSIDERS = ("anonymous", "super-app:foreign", "region-operator:foreign", "assessor:unassigned")


def spbe_index(levels: dict[str, int]) -> str:
    """The SPBE index by hand: Σ(weight × level) ÷ 100, 2 decimals half-up."""
    total = sum((WEIGHTS[node] * level for node, level in levels.items()), Decimal(0))
    return str((total / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await make_world(session)


def url(assessment_id: uuid.UUID | str, tail: str = "") -> str:
    return f"/v1/assessments/{assessment_id}{tail}"


async def record(
    client: httpx.AsyncClient, world: World, aid: uuid.UUID, nodes: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.put(
        url(aid, "/assessor-output"),
        headers={**world.headers["assessor:assigned"], **headers},
        json={"nodes": nodes},
    )


async def output_seen(
    client: httpx.AsyncClient, world: World, aid: uuid.UUID, role: str
) -> dict[str, Any]:
    """Node id → the assessor's output ``role`` reads in the results (those shown only)."""
    response = await client.get(url(aid, "/results"), headers=world.headers[role])
    assert response.status_code == 200, (role, response.text)
    return {node["id"]: node["assessor"] for node in response.json()["nodes"] if node["assessor"]}


def fields(shown: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in shown.items() if key != "updated_at"}


async def move(client: httpx.AsyncClient, world: World, aid: uuid.UUID, role: str, to: str) -> None:
    moved = await client.post(
        url(aid, "/transitions"), headers=world.headers[role], json={"to": to}
    )
    assert moved.json()["state"] == to, moved.text


async def test_the_region_reads_the_assessor_output_when_shared_or_once_published(
    client: httpx.AsyncClient, world: World
) -> None:
    aid = (await world.assessment("in_review")).id
    written = await record(client, world, aid, {"I1": RECORDED})
    assert written.status_code == 200, written.text
    assert fields(written.json()["nodes"]["I1"]) == {**RECORDED, "shared_with_region": False}

    # In review: the assessors and the ministry read it; the region sees its results without it.
    for role in ("assessor:assigned", "ministry-admin"):
        assert fields((await output_seen(client, world, aid, role))["I1"]) == {
            **RECORDED,
            "shared_with_region": False,
        }
    for role in ("region-operator:own", "super-app:own"):
        assert await output_seen(client, world, aid, role) == {}
    for role in OUTSIDERS:
        hidden = await client.get(url(aid, "/results"), headers=world.headers[role])
        assert hidden.status_code == 404, role

    # A partial write merges: I1 is approved and keeps its notes; I2's note is shared.
    merged = await record(
        client,
        world,
        aid,
        {
            "I1": {"approved": True},
            "I2": {"catatan": "Lengkapi peta rencana", "shared_with_region": True},
        },
    )
    assert merged.status_code == 200, merged.text
    assert fields(merged.json()["nodes"]["I1"]) == {
        **RECORDED,
        "approved": True,
        "shared_with_region": False,
    }
    seen = await output_seen(client, world, aid, "region-operator:own")
    assert list(seen) == ["I2"]
    assert seen["I2"]["catatan"] == "Lengkapi peta rencana"
    assert seen["I2"]["approved"] is None  # not judged yet
    assert list(await output_seen(client, world, aid, "super-app:own")) == ["I2"]
    # Shared with the region means that region: others still cannot see the assessment at all.
    for role in OUTSIDERS:
        hidden = await client.get(url(aid, "/results"), headers=world.headers[role])
        assert hidden.status_code == 404, role

    # Null clears: I1's catatan goes, I2 is no longer shared (the region stops reading it).
    cleared = await record(
        client, world, aid, {"I1": {"catatan": None}, "I2": {"shared_with_region": None}}
    )
    assert cleared.json()["nodes"]["I1"]["catatan"] is None
    assert cleared.json()["nodes"]["I1"]["rekomendasi"] == RECORDED["rekomendasi"]
    assert cleared.json()["nodes"]["I2"]["shared_with_region"] is False
    assert await output_seen(client, world, aid, "region-operator:own") == {}

    # Published: the region and everyone else read every node's output.
    await move(client, world, aid, "assessor:assigned", "verified")
    await move(client, world, aid, "ministry-admin", "published")
    for role in ("region-operator:own", "super-app:own", *OUTSIDERS):
        seen = await output_seen(client, world, aid, role)
        assert sorted(seen) == ["I1", "I2"], role
        assert seen["I1"]["approved"] is True
        assert seen["I1"]["catatan"] is None
        assert seen["I2"]["catatan"] == "Lengkapi peta rencana"
    # And it is locked with the figures.
    locked = await record(client, world, aid, {"I1": {"approved": False}})
    assert locked.status_code == 409


async def test_a_bad_node_or_field_is_422_where_it_is_and_writes_nothing(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    aid = (await world.assessment("in_review")).id
    assert (await record(client, world, aid, {"I1": RECORDED})).status_code == 200

    async def audited() -> int:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.entity == "assessor_output")
            )
            or 0
        )

    assert await audited() == 1
    refusals = {
        "/nodes/I99": {"I1": {"approved": True}, "I99": {"catatan": "tidak ada"}},
        "/nodes/I1": {"I1": {}},
        "/nodes/I1/aproved": {"I1": {"aproved": True}},
        "/nodes/I1/catatan": {"I1": {"catatan": "x" * 4001}},
        "/nodes/I1/approved": {"I1": {"approved": "mungkin"}},
    }
    for pointer, nodes in refusals.items():
        refused = await record(client, world, aid, nodes)
        assert refused.status_code == 422, (pointer, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["pointer"] == pointer
    unknown = await record(client, world, aid, refusals["/nodes/I99"])
    assert "unknown node 'I99' in spbe-2020" in unknown.json()["detail"]
    # The valid I1 beside the unknown node was not written either.
    seen = await output_seen(client, world, aid, "ministry-admin")
    assert seen["I1"]["approved"] is False
    assert await audited() == 1

    # Not in review: the assessor has nothing to record yet.
    draft = (await world.assessment("draft", framework="gmsc-2023")).id
    early = await record(client, world, draft, {"output": {"catatan": "belum"}})
    assert early.status_code == 409
    assert early.json()["state"] == "draft"

    # A keyed retry gets the first answer and writes nothing twice.
    keyed = {"Idempotency-Key": "asesor-I3"}
    first = await record(client, world, aid, {"I3": {"evidence_uploaded": False}}, **keyed)
    again = await record(client, world, aid, {"I3": {"evidence_uploaded": False}}, **keyed)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await audited() == 2


async def test_the_results_export_carries_the_output_its_reader_may_see(
    client: httpx.AsyncClient, world: World
) -> None:
    aid = (await world.assessment("in_review")).id
    formula = '=HYPERLINK("http://example.com","klik")'
    written = await record(
        client,
        world,
        aid,
        {
            "I1": RECORDED,
            "I2": {"approved": True, "rekomendasi": formula, "shared_with_region": True},
        },
    )
    assert written.status_code == 200, written.text

    async def csv_rows(role: str) -> dict[str, dict[str, str]]:
        exported = await client.get(
            url(aid, "/results/export"), params={"lang": "id"}, headers=world.headers[role]
        )
        assert exported.status_code == 200, exported.text
        return {row["Kode"]: row for row in csv.DictReader(io.StringIO(exported.text))}

    ministry = await csv_rows("ministry-admin")
    assert {
        key: ministry["I1"][key]
        for key in (
            "Bukti diunggah",
            "Terkonfirmasi wawancara",
            "Disetujui",
            "Catatan",
            "Rekomendasi",
        )
    } == {
        "Bukti diunggah": "true",
        "Terkonfirmasi wawancara": "true",
        "Disetujui": "false",
        "Catatan": RECORDED["catatan"],
        "Rekomendasi": RECORDED["rekomendasi"],
    }
    assert (ministry["I3"]["Catatan"], ministry["I3"]["Disetujui"]) == ("", "")
    # The region's export in review holds only what was shared with it.
    region = await csv_rows("region-operator:own")
    assert (region["I1"]["Catatan"], region["I1"]["Disetujui"]) == ("", "")
    assert (region["I2"]["Disetujui"], region["I2"]["Rekomendasi"]) == ("true", formula)

    workbook = await client.get(
        url(aid, "/results/export"),
        params={"format": "xlsx"},
        headers=world.headers["ministry-admin"],
    )
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.content)).active
    assert sheet is not None
    header, *rows = list(sheet.iter_rows())
    columns = [cell.value for cell in header]
    assert columns[-5:] == [
        "Evidence uploaded",
        "Confirmed in interview",
        "Approved",
        "Note",
        "Recommendation",
    ]
    by_node = {row[0].value: row for row in rows}
    assert [cell.value for cell in by_node["I1"][-5:]] == [
        True,
        True,
        False,
        RECORDED["catatan"],
        RECORDED["rekomendasi"],
    ]
    # Text an assessor typed stays text: never a live formula in the workbook.
    recommendation = by_node["I2"][columns.index("Recommendation")]
    assert (recommendation.value, recommendation.data_type) == (formula, "s")


async def test_self_assessed_and_verified_index_side_by_side(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    aid = (await world.assessment("draft")).id
    region, assessor = world.headers["region-operator:own"], world.headers["assessor:assigned"]

    async def figures() -> tuple[tuple[str | None, str | None], ...]:
        await recompute(sessionmaker, aid, None)
        result = (await client.get(url(aid), headers=region)).json()["result"]
        summary = (await client.get(url(aid, "/summary"), headers=region)).json()
        assert summary["indices"] == result["indices"]
        assert summary["index"] == result["index"]
        indices = result["indices"]
        return (
            (result["index"], result["predicate"]),
            (indices["self_assessed"]["value"], indices["self_assessed"]["predicate"]),
            (indices["verified"]["value"], indices["verified"]["predicate"]),
        )

    # The region rates its policies (I1–I10) and its services (I32–I47) at 5.
    own = {
        node: 5 if int(node[1:]) <= 10 or int(node[1:]) >= 32 else level
        for node, level in LEVELS.items()
    }
    # Σ = 372 + 10 × 1.30 × 2 + (10 × 2.75 + 6 × 3.00) × 1 = 443.5: 4.435, half-up 4.44.
    assert spbe_index(own) == "4.44"
    filled = await client.put(url(aid, "/inputs"), headers=region, json={"values": own})
    assert filled.status_code == 200, filled.text
    await move(client, world, aid, "region-operator:own", "submitted")
    await move(client, world, aid, "assessor:assigned", "in_review")
    # Nothing verified yet: the index is the region's own, and there is no verified index.
    assert await figures() == (("4.44", "Memuaskan"), ("4.44", "Memuaskan"), (None, None))

    # A results letter's official index stands in for the index; the self-assessed index is
    # the region's values only, never an official figure.
    letter = {"values": {"spbe": "3.08"}, "source": "Surat hasil evaluasi SPBE 2024"}
    imported = await client.put(
        url(aid, "/official-results"), headers=world.headers["ministry-admin"], json=letter
    )
    assert imported.status_code == 200, imported.text
    assert await figures() == (("3.08", "Baik"), ("4.44", "Memuaskan"), (None, None))

    # The assessor verifies I1 at level 2: the index counts it (and drops the stand-in); the
    # verified index still lacks 46 required indicators.
    assert (
        await client.put(url(aid, "/inputs"), headers=assessor, json={"values": {"I1": 2}})
    ).is_success
    counted = {**own, "I1": 2}
    # 443.5 − 1.30 × 3 = 439.6: 4.396, half-up 4.40.
    assert spbe_index(counted) == "4.40"
    assert await figures() == (("4.40", "Memuaskan"), ("4.44", "Memuaskan"), (None, None))

    # Every indicator verified, at LEVELS but I1 at 2: 372 − 1.30 = 370.7, 3.707 → 3.71.
    verified = {**LEVELS, "I1": 2}
    assert spbe_index(verified) == "3.71"
    done = await client.put(url(aid, "/inputs"), headers=assessor, json={"values": verified})
    assert done.is_success, done.text
    assert await figures() == (
        ("3.71", "Sangat Baik"),
        ("4.44", "Memuaskan"),
        ("3.71", "Sangat Baik"),
    )

    # The tree carries the same figures for whoever sees the assessment.
    tree = (await client.get(url(aid, "/results"), headers=assessor)).json()
    assert tree["result"]["indices"]["self_assessed"]["value"] == "4.44"
    assert tree["result"]["indices"]["verified"]["value"] == "3.71"
