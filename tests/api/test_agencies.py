"""Perangkat daerah (OPD): a region's agencies, who answers for which indicator (PJ), the
planner's gap shared out by agency, internal assessments of agencies (seen inside the region
only, never in official figures), and the agencies side by side."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.models import (
    Assessment,
    AssessmentState,
    WebhookDelivery,
    WebhookSubscription,
)
from services.scoring import repository as scoring_repository
from services.scoring.service import recompute
from tests.api.test_plan import LEVELS, spbe_assessment

MakeKey = Callable[..., Awaitable[dict[str, str]]]
BEKASI, BOGOR = "32.75", "32.71"


async def add_agency(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, short: str, kind: str = "dinas"
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/regions/{BEKASI}/agencies",
        json={"name": name, "short_name": short, "kind": kind},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_the_region_manages_its_agencies_and_no_one_else_sees_them(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    operator = await make_key("region-operator", BEKASI)
    empty = await client.get(f"/v1/regions/{BEKASI}/agencies", headers=operator)
    assert empty.json() == {"items": [], "next_cursor": None}  # loaded empty
    kominfo = await add_agency(
        client,
        operator,
        "Dinas Komunikasi, Informatika, Statistik dan Persandian",
        "Diskominfostandi",
    )
    await add_agency(client, operator, "Badan Perencanaan Pembangunan Daerah", "Bappeda", "badan")
    twin = await client.post(
        f"/v1/regions/{BEKASI}/agencies",
        json={"name": "badan perencanaan pembangunan daerah", "kind": "badan"},
        headers=operator,
    )
    assert twin.status_code == 409  # the same name, any case
    unknown_kind = await client.post(
        f"/v1/regions/{BEKASI}/agencies", json={"name": "Dinas X", "kind": "bumd"}, headers=operator
    )
    assert unknown_kind.status_code == 422

    first = await client.get(f"/v1/regions/{BEKASI}/agencies?limit=1", headers=operator)
    page = first.json()
    assert [item["short_name"] for item in page["items"]] == ["Bappeda"]  # by name
    second = await client.get(
        f"/v1/regions/{BEKASI}/agencies?limit=1&cursor={page['next_cursor']}", headers=operator
    )
    assert [item["short_name"] for item in second.json()["items"]] == ["Diskominfostandi"]
    assert second.json()["next_cursor"] is None

    renamed = await client.patch(
        f"/v1/regions/{BEKASI}/agencies/{kominfo['id']}",
        json={"short_name": "Diskominfo"},
        headers=operator,
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["short_name"], renamed.json()["name"]) == (
        "Diskominfo",
        kominfo["name"],
    )

    # Outside the region the agencies do not exist: the ministry, another region, the public.
    for role, regions in (("ministry-admin", ()), ("region-operator", (BOGOR,)), ("assessor", ())):
        outsider = await make_key(role, *regions, name=f"{role} outsider")
        listed = await client.get(f"/v1/regions/{BEKASI}/agencies", headers=outsider)
        assert listed.status_code == 404, (role, listed.text)
    assert (await client.get(f"/v1/regions/{BEKASI}/agencies")).status_code == 401
    foreign = await make_key("region-operator", BOGOR, name="bogor")
    stolen = await client.delete(f"/v1/regions/{BEKASI}/agencies/{kominfo['id']}", headers=foreign)
    assert stolen.status_code == 404

    gone = await client.delete(f"/v1/regions/{BEKASI}/agencies/{kominfo['id']}", headers=operator)
    assert gone.status_code == 204
    left = await client.get(f"/v1/regions/{BEKASI}/agencies", headers=operator)
    assert [item["short_name"] for item in left.json()["items"]] == ["Bappeda"]


async def test_pj_per_indicator_and_the_plan_shared_out_by_agency(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = await spbe_assessment(session)  # Kota Bekasi-style 3.83: I19–I28 at 3
    operator = await make_key("region-operator", BEKASI)
    kominfo = await add_agency(client, operator, "Dinas Komunikasi dan Informatika", "Diskominfo")
    bappeda = await add_agency(client, operator, "Badan Perencanaan", "Bappeda", "badan")
    pj = {f"I{n}": kominfo["id"] for n in range(19, 24)} | {
        f"I{n}": bappeda["id"] for n in (1, 2, 24, 25, 26, 27, 28)
    }
    put = await client.put(
        f"/v1/assessments/{assessment.id}/responsibilities", json={"nodes": pj}, headers=operator
    )
    assert put.status_code == 200, put.text
    assert {node: ref["short_name"] for node, ref in put.json()["nodes"].items()} == {
        node: ("Diskominfo" if agency == kominfo["id"] else "Bappeda")
        for node, agency in pj.items()
    }
    # Only leaves, only the region's agencies; nothing of a refused request is written.
    for nodes, pointer in (
        ({"I1": kominfo["id"], "D1": kominfo["id"]}, "/nodes/D1"),
        ({"I1": str(uuid.uuid4())}, "/nodes/I1"),
    ):
        refused = await client.put(
            f"/v1/assessments/{assessment.id}/responsibilities",
            json={"nodes": nodes},
            headers=operator,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["pointer"] == pointer
    cleared = await client.put(
        f"/v1/assessments/{assessment.id}/responsibilities",
        json={"nodes": {"I1": None, "I2": None}},
        headers=operator,
    )
    assert "I1" not in cleared.json()["nodes"]
    assert "I24" in cleared.json()["nodes"]

    plan = (
        await client.get(f"/v1/assessments/{assessment.id}/plan?target=Memuaskan", headers=operator)
    ).json()
    response = await client.get(
        f"/v1/assessments/{assessment.id}/agencies?target=Memuaskan", headers=operator
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert (view["index"], view["predicate"], view["current_index"]) == (
        "4.20",
        "Memuaskan",
        "3.83",
    )
    shares = {(s["agency"] or {}).get("short_name"): s for s in view["agencies"]}
    assert list(shares) == ["Bappeda", "Diskominfo", None]  # by name, then the unassigned
    plan_steps = {step["node"]: step for step in plan["steps"]}
    for name, share in shares.items():
        owned = {indicator["node"] for indicator in share["indicators"]}
        if name == "Diskominfo":
            assert owned == {f"I{n}" for n in range(19, 24)}
        elif name == "Bappeda":
            assert owned == {f"I{n}" for n in range(24, 29)}
        # Each agency's share of the gap is exactly the plan's steps on its indicators.
        mine = [plan_steps[node] for node in owned if node in plan_steps]
        assert share["steps"] == sum(step["steps"] for step in mine), name
        for indicator in share["indicators"]:
            assert indicator["gap"] == plan_steps.get(indicator["node"])
            assert (
                indicator["value"] == str(LEVELS[indicator["node"]]) or indicator["value"] is None
            )
    assert sum(share["steps"] for share in shares.values()) == sum(
        step["steps"] for step in plan["steps"]
    )

    # Evidence requests open per agency: those naming one of its indicators.
    session.add(
        Assessment(region_code=BOGOR, framework_id="spbe-2020", period=2024)
    )  # noise in another region
    from services.models import EvidenceRequest

    session.add_all(
        [
            EvidenceRequest(assessment_id=assessment.id, node_ids=["I19"], message="Perwali SPBE"),
            EvidenceRequest(
                assessment_id=assessment.id, node_ids=["I25", "I40"], message="Renstra"
            ),
        ]
    )
    await session.commit()
    by_agency = await client.get(
        f"/v1/assessments/{assessment.id}/evidence-requests?agency={kominfo['id']}",
        headers=operator,
    )
    assert [r["message"] for r in by_agency.json()["items"]] == ["Perwali SPBE"]
    view = (await client.get(f"/v1/assessments/{assessment.id}/agencies", headers=operator)).json()
    counts = {
        (s["agency"] or {}).get("short_name"): s["open_evidence_requests"] for s in view["agencies"]
    }
    assert counts == {"Bappeda": 1, "Diskominfo": 1, None: 1}
    ministry = await make_key("ministry-admin")
    # The ministry sees the official assessment, not the region's organisation of it.
    assert (
        await client.get(f"/v1/assessments/{assessment.id}", headers=ministry)
    ).status_code == 200
    hidden = await client.get(f"/v1/assessments/{assessment.id}/agencies", headers=ministry)
    assert hidden.status_code == 404
    filtered = await client.get(
        f"/v1/assessments/{assessment.id}/evidence-requests?agency={kominfo['id']}",
        headers=ministry,
    )
    assert filtered.status_code == 404

    export = await client.get(
        f"/v1/assessments/{assessment.id}/agencies/export?target=Memuaskan&lang=id",
        headers=operator,
    )
    assert export.status_code == 200, export.text
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:2] == ["Perangkat daerah (PJ)", "Kode"]
    assert sorted(row[1] for row in rows[1:]) == sorted(plan_steps)


async def _internal_workflow(
    client: httpx.AsyncClient, operator: dict[str, str], agency_id: str, level: int
) -> str:
    """An internal SPBE 2024 assessment of the agency, all indicators at ``level``, taken by
    the region's operator (its internal assessor) from draft to published."""
    opened = await client.post(
        "/v1/assessments",
        json={"region": BEKASI, "framework": "spbe-2020", "period": 2024, "agency": agency_id},
        headers=operator,
    )
    assert opened.status_code == 201, opened.text
    body = opened.json()
    assert body["internal"] is True
    assert body["agency"]["id"] == agency_id
    aid = body["id"]
    values = {f"I{n}": level for n in range(1, 48)}
    put = await client.put(
        f"/v1/assessments/{aid}/inputs", json={"values": values}, headers=operator
    )
    assert put.json()["written"] == "self", put.text
    for to in ("submitted", "in_review"):
        moved = await client.post(
            f"/v1/assessments/{aid}/transitions", json={"to": to}, headers=operator
        )
        assert moved.status_code == 200, moved.text
    verified = await client.put(
        f"/v1/assessments/{aid}/inputs", json={"values": values}, headers=operator
    )
    assert verified.json()["written"] == "verified", verified.text  # its internal assessor
    for to in ("verified", "published"):
        moved = await client.post(
            f"/v1/assessments/{aid}/transitions", json={"to": to}, headers=operator
        )
        assert moved.status_code == 200, moved.text
    return str(aid)


async def test_internal_assessments_stay_inside_the_region_and_out_of_official_figures(
    client: httpx.AsyncClient,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    make_key: MakeKey,
) -> None:
    # The official assessment: Kota Bekasi-style 3.83, published.
    official = await spbe_assessment(session)
    official.state = AssessmentState.PUBLISHED
    session.add_all(
        [
            WebhookSubscription(
                url="https://kementerian.example/hook",
                events=["result.changed"],
                secret="whsec_AAAA",
            ),
            WebhookSubscription(
                url="https://bekasi.example/hook",
                events=["result.changed"],
                secret="whsec_AAAA",
                regions=[BEKASI],
            ),
        ]
    )
    await session.commit()
    await recompute(sessionmaker, official.id, None)
    operator = await make_key("region-operator", BEKASI)
    kominfo = await add_agency(client, operator, "Dinas Komunikasi dan Informatika", "Diskominfo")
    dinkes = await add_agency(client, operator, "Dinas Kesehatan", "Dinkes")
    # Higher than the official index: 5.00 (every indicator at 5) and 2.00.
    best = await _internal_workflow(client, operator, kominfo["id"], 5)
    other = await _internal_workflow(client, operator, dinkes["id"], 2)
    # One internal assessment per agency beside the official one.
    again = await client.post(
        "/v1/assessments",
        json={"region": BEKASI, "framework": "spbe-2020", "period": 2024, "agency": kominfo["id"]},
        headers=operator,
    )
    assert again.status_code == 409
    for aid in (best, other):
        await recompute(sessionmaker, uuid.UUID(aid), None)
    mine = (await client.get(f"/v1/assessments/{best}", headers=operator)).json()
    assert mine["result"]["index"] == "5.00"
    assert mine["internal"] is True
    assert mine["agency"]["short_name"] == "Diskominfo"

    # Official figures, for every caller: the official 3.83 alone.
    ministry = await make_key("ministry-admin")
    for headers in ({}, ministry, operator):
        ranking = (
            await client.get("/v1/rankings?framework=spbe-2020&period=2024", headers=headers)
        ).json()
        assert [(i["region"], i["index"]) for i in ranking["items"]] == [(BEKASI, "3.83")]
        dashboard = (
            await client.get("/v1/dashboard?framework=spbe-2020&period=2024", headers=headers)
        ).json()
        assert (dashboard["coverage"]["with_results"], dashboard["index"]["max"]) == (1, "3.83")
        trend = (
            await client.get(f"/v1/trends?framework=spbe-2020&region={BEKASI}", headers=headers)
        ).json()
        assert [item["index"] for item in trend["items"]] == ["3.83"]
        compared = (
            await client.get(
                f"/v1/compare?framework=spbe-2020&period=2024&regions={BEKASI}", headers=headers
            )
        ).json()
        root = next(node for node in compared["nodes"] if node["id"] == "spbe")
        assert root["values"][BEKASI]["value"] == "3.83"
        exported = await client.get(
            "/v1/rankings/export?framework=spbe-2020&period=2024", headers=headers
        )
        assert "5.00" not in exported.text
        assert "3.83" in exported.text
        summary = (
            await client.get(f"/v1/assessments/{official.id}/summary", headers=headers)
        ).json()
        assert (summary["rank"]["national"], summary["rank"]["of_national"]) == (1, 1)
    internal_summary = (
        await client.get(f"/v1/assessments/{best}/summary", headers=operator)
    ).json()
    assert internal_summary["rank"]["national"] is None
    assert internal_summary["internal"] is True

    # Visible inside the region only, published or not: 404 for the ministry, another
    # region, assessors and the public, on the assessment and everything attached to it.
    outsiders = [
        {},
        ministry,
        await make_key("region-operator", BOGOR, name="bogor"),
        await make_key("assessor", name="asesor"),
    ]
    for headers in outsiders:
        for url in (
            f"/v1/assessments/{best}",
            f"/v1/assessments/{best}/results",
            f"/v1/assessments/{best}/plan?target=5",
        ):
            assert (await client.get(url, headers=headers)).status_code == 404, (url, headers)
        listed = (await client.get("/v1/assessments?limit=1000", headers=headers)).json()
        ids = {i["id"] for i in listed["items"]}
        assert str(official.id) in ids
        assert not {best, other} & ids
        if headers:
            moved = await client.post(
                f"/v1/assessments/{best}/transitions",
                json={"to": "in_review", "reason": "x"},
                headers=headers,
            )
            assert moved.status_code == 404
    inside = (await client.get("/v1/assessments?limit=1000&internal=true", headers=operator)).json()
    assert {i["id"] for i in inside["items"]} == {best, other}

    # Marked internal in its export; the official export has the column empty.
    internal_export = await client.get(
        f"/v1/assessments/{best}/results/export?lang=id", headers=operator
    )
    rows = list(csv.DictReader(io.StringIO(internal_export.text)))
    assert {row["Evaluasi internal perangkat daerah"] for row in rows} == {"Diskominfo"}
    official_export = await client.get(
        f"/v1/assessments/{official.id}/results/export?lang=id", headers=operator
    )
    assert {
        row["Evaluasi internal perangkat daerah"]
        for row in csv.DictReader(io.StringIO(official_export.text))
    } == {""}

    # Its result.changed events go to the region's own subscription, never the ministry's.
    deliveries = (await session.scalars(select(WebhookDelivery))).all()
    heard = {(d.payload["data"]["assessment_id"], d.subscription_id) for d in deliveries}
    subscriptions = {
        s.regions is None: s.id for s in (await session.scalars(select(WebhookSubscription))).all()
    }
    assert (best, subscriptions[True]) not in heard
    assert (best, subscriptions[False]) in heard
    assert (str(official.id), subscriptions[True]) in heard

    # A linked view reads the official figure, never an agency's internal one.
    linked = await scoring_repository.linked_values(
        session, "spbe-2020", "spbe", {(BEKASI, 2024, "final")}
    )
    assert {key: str(value) for key, value in linked.items()} == {(BEKASI, 2024, "final"): "3.83"}

    # The agencies side by side, and the weakest indicators across them.
    comparison = await client.get(
        f"/v1/regions/{BEKASI}/agencies/comparison?framework=spbe-2020&period=2024",
        headers=operator,
    )
    assert comparison.status_code == 200, comparison.text
    body = comparison.json()
    assert {c["agency"]["short_name"]: c["index"] for c in body["agencies"]} == {
        "Diskominfo": "5.00",
        "Dinkes": "2.00",
    }
    i1 = next(node for node in body["nodes"] if node["id"] == "I1")
    assert i1["values"] == {kominfo["id"]: "5", dinkes["id"]: "2"}
    assert body["weakest"][0]["mean"] == "3.50"
    assert body["weakest"][0]["lowest_agencies"] == [dinkes["id"]]
    assert (
        await client.get(
            f"/v1/regions/{BEKASI}/agencies/comparison?framework=spbe-2020&period=2024",
            headers=ministry,
        )
    ).status_code == 404
    export = await client.get(
        f"/v1/regions/{BEKASI}/agencies/comparison/export?framework=spbe-2020&period=2024&lang=id",
        headers=operator,
    )
    table = list(csv.reader(io.StringIO(export.text)))
    assert table[0] == ["Kode", "Nama", "Induk", "Dinkes", "Diskominfo"]
    assert [table[1][0], *table[1][3:]] == ["spbe", "2.00", "5.00"]

    # An agency with internal assessments stays.
    kept = await client.delete(f"/v1/regions/{BEKASI}/agencies/{kominfo['id']}", headers=operator)
    assert kept.status_code == 409


async def test_evidence_names_the_agency_responsible(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = Assessment(region_code=BEKASI, framework_id="spbe-2020", period=2024)
    session.add(assessment)
    await session.commit()
    operator = await make_key("region-operator", BEKASI)
    kominfo = await add_agency(client, operator, "Dinas Komunikasi dan Informatika", "Diskominfo")

    def upload(agency: str, content: bytes) -> Awaitable[httpx.Response]:
        return client.post(
            "/v1/evidence",
            headers=operator,
            data={"assessment_id": str(assessment.id), "node_ids": "I1", "agency_id": agency},
            files={
                "file": ("perwali.pdf", b"%PDF-1.4\n" + content + b"\n%%EOF\n", "application/pdf")
            },
        )

    stored = await upload(kominfo["id"], b"1")
    assert stored.status_code == 201, stored.text
    assert stored.json()["agency_id"] == kominfo["id"]
    assert (await upload(str(uuid.uuid4()), b"2")).status_code == 422  # not the region's agency
    await upload("", b"3")  # no agency named
    url = f"/v1/evidence?assessment_id={assessment.id}"
    assert len((await client.get(url, headers=operator)).json()["items"]) == 2
    mine = (await client.get(f"{url}&agency_id={kominfo['id']}", headers=operator)).json()["items"]
    assert [item["id"] for item in mine] == [stored.json()["id"]]
    ministry = await make_key("ministry-admin")
    assert (
        await client.get(f"{url}&agency_id={kominfo['id']}", headers=ministry)
    ).status_code == 404
