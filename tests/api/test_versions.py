"""Instruments over time: an assessment opens on the version in force for its period, trends say
where the instrument changed, and the frameworks read tells each version's provenance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, ResultState

MakeKey = Callable[..., Awaitable[dict[str, str]]]


async def test_the_e_government_instrument_is_spbe_up_to_2025_and_ipd_from_2026(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    ministry = await make_key("ministry-admin")
    opened = {}
    for period in (2025, 2026):
        answer = await client.post(
            "/v1/assessments",
            headers=ministry,
            json={"region": "32.71", "family": "e-government", "period": period},
        )
        assert answer.status_code == 201, answer.text
        opened[period] = answer.json()["framework"]
    assert opened == {2025: "spbe-2020", 2026: "ipd-2026"}

    # An explicit version still works, in its own periods...
    kept = await client.post(
        "/v1/assessments",
        headers=ministry,
        json={"region": "32.75", "framework": "spbe-2020", "period": 2024},
    )
    assert kept.status_code == 201, kept.text
    # ... and names the version in force when it is not.
    revoked = await client.post(
        "/v1/assessments",
        headers=ministry,
        json={"region": "32.75", "framework": "spbe-2020", "period": 2026},
    )
    assert revoked.status_code == 422, revoked.text
    problem = revoked.json()
    assert problem["errors"][0]["pointer"] == "/framework"
    assert "spbe-2020 is in force for periods 2020–2025, not for 2026" in problem["detail"]
    assert "the e-government version for 2026 is ipd-2026" in problem["detail"]
    early = await client.post(
        "/v1/assessments",
        headers=ministry,
        json={"region": "32.75", "framework": "ipd-2026", "period": 2025},
    )
    assert early.status_code == 422
    assert "the e-government version for 2025 is spbe-2020" in early.json()["detail"]


async def test_an_instrument_that_cannot_be_resolved_is_refused_and_nothing_is_opened(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    ministry = await make_key("ministry-admin")
    cases = {
        "before any version": (
            {"family": "e-government", "period": 2019},
            "/period",
            "no e-government version is in force for 2019",
        ),
        "unknown family": (
            {"family": "e-goverment", "period": 2026},
            "/family",
            "no instrument family 'e-goverment'",
        ),
        "version of another family": (
            {"family": "smart-city", "framework": "ipd-2026", "period": 2026},
            "/framework",
            "ipd-2026 is a version of e-government, not of smart-city",
        ),
    }
    for case, (body, pointer, detail) in cases.items():
        answer = await client.post(
            "/v1/assessments", headers=ministry, json={"region": "32.71", **body}
        )
        assert answer.status_code == 422, (case, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["pointer"] == pointer, case
        assert detail in answer.json()["detail"], case
    neither = await client.post(
        "/v1/assessments", headers=ministry, json={"region": "32.71", "period": 2026}
    )
    assert neither.status_code == 422
    assert "family" in neither.text
    listed = await client.get("/v1/assessments", headers=ministry, params={"region": "32.71"})
    assert listed.json()["items"] == []


async def test_a_trend_across_the_change_of_instrument_shows_both_and_no_improvement(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    figures = [
        ("spbe-2020", 2024, "3.72", "Sangat Baik"),
        ("spbe-2020", 2025, "3.80", "Sangat Baik"),
        ("ipd-2026", 2026, "2.77", "Baik"),
    ]
    for framework, period, index, predicate in figures:
        assessment = Assessment(
            region_code="32.71", framework_id=framework, period=period, state="published"
        )
        session.add(assessment)
        await session.flush()
        session.add(
            ResultState(
                assessment_id=assessment.id,
                input_revision=0,
                framework_hash="0" * 64,
                index_value=Decimal(index),
                predicate=predicate,
                complete=True,
                computed_at=datetime.now(UTC),
            )
        )
    await session.commit()

    trend = (
        await client.get("/v1/trends", params={"family": "e-government", "region": "32.71"})
    ).json()
    assert trend["family"] == "e-government"
    assert trend["framework"] is None
    assert trend["instruments"] == ["spbe-2020", "ipd-2026"]
    assert [
        (p["period"], p["framework"], p["index"], p["improvement"], p["instrument_changed"])
        for p in trend["items"]
    ] == [
        (2024, "spbe-2020", "3.72", None, False),
        (2025, "spbe-2020", "3.80", "0.08", False),
        # 3.80 → 2.77 is a change of instrument, not a fall of 1.03.
        (2026, "ipd-2026", "2.77", None, True),
    ]
    # One version only: the IPD alone, with nothing before it to compare with.
    ipd = (
        await client.get("/v1/trends", params={"framework": "ipd-2026", "region": "32.71"})
    ).json()
    assert [(p["period"], p["improvement"]) for p in ipd["items"]] == [(2026, None)]
    assert ipd["family"] == "e-government"
    mismatch = await client.get(
        "/v1/trends", params={"framework": "ipd-2026", "family": "smart-city", "region": "32.71"}
    )
    assert mismatch.status_code == 422
    assert (await client.get("/v1/trends", params={"region": "32.71"})).status_code == 422
    unknown = await client.get("/v1/trends", params={"family": "nope", "region": "32.71"})
    assert unknown.status_code == 404


async def test_frameworks_tell_their_instrument_periods_and_provenance(
    client: httpx.AsyncClient,
) -> None:
    listed = {f["id"]: f for f in (await client.get("/v1/frameworks")).json()}
    assert (listed["spbe-2020"]["family"], listed["spbe-2020"]["in_force"]) == (
        "e-government",
        {"from": 2020, "to": 2025},
    )
    assert listed["spbe-2020"]["status"] == "official"
    assert listed["ipd-2026"]["in_force"] == {"from": 2026, "to": None}
    assert listed["ipd-2026"]["status"] == "provisional"
    assert "predikat bands" in listed["ipd-2026"]["status_note"]
    assert listed["smartcity-spbe-linked"]["status"] == "cerdas"
    assert listed["ipd-2026"]["source"].startswith("PermenPANRB No. 8 Tahun 2026")

    in_force = (
        await client.get("/v1/frameworks", params={"family": "e-government", "period": 2026})
    ).json()
    assert [f["id"] for f in in_force] == ["ipd-2026"]
    versions = (await client.get("/v1/frameworks", params={"family": "e-government"})).json()
    assert [f["id"] for f in versions] == ["spbe-2020", "ipd-2026"]  # oldest first

    ipd = (await client.get("/v1/frameworks/ipd-2026")).json()
    nodes = {}
    stack = list(ipd["trees"])
    while stack:
        node = stack.pop()
        nodes[node["id"]] = node
        stack.extend(node["children"])
    assert nodes["I5"]["input"] == "outside"
    assert nodes["I5"]["outside"] == {
        "source": "Bappenas (Satu Data Indonesia)",
        "absent_value": "1",
    }
    assert nodes["I1"]["outside"] is None
    composite = (await client.get("/v1/frameworks/smartcity-spbe-linked")).json()
    [tree] = composite["trees"]
    links = {child["id"]: child["links"] for child in tree["children"]}
    assert [(link["framework"], link["node"]) for link in links["spbe_index"]] == [
        ("spbe-2020", "spbe"),
        ("ipd-2026", "ipd"),
    ]


async def test_metrics_open_views_only_for_periods_their_framework_is_in_force(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    ministry = await make_key("ministry-admin")
    points = [
        {"region": "32.71", "metric": metric, "period": period, "value": value}
        for period in ("2019-12", "2024-12")
        for metric, value in (("integrated_apps", 148), ("integrated_apps_target", 327))
    ]
    pushed = await client.post("/v1/metrics:batch", headers=ministry, json={"points": points})
    assert pushed.status_code == 200, pushed.text
    views = (
        await client.get(
            "/v1/assessments",
            headers=ministry,
            params={"framework": "smartcity-spbe-linked", "region": "32.71"},
        )
    ).json()["items"]
    # The composite is in force from 2021: the 2019 figures are stored, no 2019 view is opened.
    assert [view["period"] for view in views] == [2024]
