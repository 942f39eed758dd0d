"""The plan of an assessment over HTTP: the values that count, who sees it, costs, exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable

import httpx
import openpyxl
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, AssessmentInput, AssessmentState

MakeKey = Callable[..., Awaitable[dict[str, str]]]
BEKASI, BOGOR = "32.75", "32.71"
# Kota Bekasi-style SPBE 2020 levels published at 3.83 (tests/scoring/test_planner.py): all at 4
# but I19–I28 at 3.
LEVELS = {f"I{n}": 4 for n in range(1, 48)} | {f"I{n}": 3 for n in range(19, 29)}


async def spbe_assessment(session: AsyncSession, *, verified_i42: str | None = None) -> Assessment:
    """Kota Bekasi's SPBE 2024 in review: its own levels, and optionally a verified I42."""
    assessment = Assessment(
        region_code=BEKASI, framework_id="spbe-2020", period=2024, state=AssessmentState.IN_REVIEW
    )
    session.add(assessment)
    await session.flush()
    for node_id, level in LEVELS.items():
        verified = verified_i42 if node_id == "I42" else None
        session.add(
            AssessmentInput(
                assessment_id=assessment.id,
                node_id=node_id,
                self_value=str(level),
                verified_value=verified,
            )
        )
    await session.commit()
    return assessment


async def test_a_region_reads_its_own_plan_and_no_other_region_does(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = await spbe_assessment(session)
    own = await make_key("region-operator", BEKASI)
    url = f"/v1/assessments/{assessment.id}/plan"
    response = await client.get(url, params={"target": "Memuaskan"}, headers=own)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["assessment"] == str(assessment.id)
    assert (plan["reachable"], plan["cost"], plan["index"]) == (True, "13", "4.20")
    assert plan["current"] == {"index": "3.83", "predicate": "Sangat Baik"}
    assert plan["steps"][0].keys() == {
        "node",
        "name",
        "from",
        "to",
        "steps",
        "cost",
        "contribution",
    }
    assert all(len(option["steps"]) == 13 for option in plan["alternatives"])
    for other in (await make_key("region-operator", BOGOR), await make_key("super-app", BOGOR), {}):
        hidden = await client.get(url, params={"target": "Memuaskan"}, headers=other)
        assert hidden.status_code == 404, hidden.text


async def test_the_plan_counts_verified_values(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    # The assessor verified I42 at 5 (the region said 4): the index that counts is 3.86, and
    # Memuaskan (Σ ≥ 419.5 from 386) takes 12 steps: 5 × 3.00 + 7 × 2.75 = 34.25 ≥ 33.5, while
    # 11 give at most 5 × 3.00 + 6 × 2.75 = 31.5.
    assessment = await spbe_assessment(session, verified_i42="5")
    admin = await make_key("ministry-admin")
    response = await client.get(
        f"/v1/assessments/{assessment.id}/plan", params={"target": "4.20"}, headers=admin
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["current"]["index"] == "3.86"
    assert plan["cost"] == "12"
    assert "I42" not in {step["node"] for step in plan["steps"]}


async def test_costs_in_a_body_change_the_plan(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = await spbe_assessment(session)
    assessor = await make_key("assessor")
    # An assessor not assigned to it does not see it.
    url = f"/v1/assessments/{assessment.id}/plan"
    body = {"target": "Memuaskan", "costs": {f"I{n}": 3 for n in range(42, 48)}}
    assert (await client.post(url, json=body, headers=assessor)).status_code == 404
    own = await make_key("super-app", BEKASI)
    response = await client.post(url, json=body, headers=own)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert (plan["cost"], plan["index"]) == ("14", "4.21")  # as tests/scoring/test_planner.py
    assert not {step["node"] for step in plan["steps"]} & {f"I{n}" for n in range(42, 48)}
    assert (await client.post(url, json=body)).status_code == 401


async def test_bad_parameters_are_422_naming_them(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = await spbe_assessment(session)
    own = await make_key("region-operator", BEKASI)
    url = f"/v1/assessments/{assessment.id}/plan"
    cases = [
        ("get", {"params": {"target": "Istimewa"}}, "/target"),
        ("get", {"params": {"target": "6"}}, "/target"),
        ("post", {"json": {"target": "4", "costs": {"I99": 1}}}, "/costs/I99"),
        ("post", {"json": {"target": "4", "costs": {"I1": 0}}}, "/costs/I1"),
        ("post", {"json": {"target": "4", "increment": "0.001"}}, "/increment"),
    ]
    for method, kwargs, pointer in cases:
        response = await client.request(method.upper(), url, headers=own, **kwargs)
        assert response.status_code == 422, (pointer, response.text)
        assert pointer in {error["pointer"] for error in response.json()["errors"]}, response.text


async def test_the_plan_exports_as_csv_and_xlsx_with_indonesian_headers(
    client: httpx.AsyncClient, session: AsyncSession, make_key: MakeKey
) -> None:
    assessment = await spbe_assessment(session)
    own = await make_key("region-operator", BEKASI)
    url = f"/v1/assessments/{assessment.id}/plan/export"
    params = {"target": "Memuaskan", "format": "csv", "lang": "id"}
    response = await client.get(url, params=params, headers=own)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:6] == ["Opsi", "Target tercapai", "Kode", "Nama", "Dari", "Menjadi"]
    plan = [row for row in rows[1:] if row[0] == "1"]
    assert len(plan) == 13
    i47 = next(row for row in plan if row[2] == "I47")
    assert i47[4:] == ["4", "5", "1", "1", "0.0300", "13", "4.20", "Memuaskan"]
    params["format"] = "xlsx"
    workbook = openpyxl.load_workbook(
        io.BytesIO((await client.get(url, params=params, headers=own)).content)
    )
    sheet = workbook.active
    assert sheet is not None
    header, *cells = list(sheet.iter_rows(values_only=True))
    assert header[-3:] == ("Total biaya", "Indeks setelahnya", "Predikat setelahnya")
    assert {row[-2] for row in cells if row[0] == 1} == {4.2}
    # Met already: one row with no indicator.
    met = await client.get(url, params={"target": "Baik"}, headers=own)
    rows = list(csv.reader(io.StringIO(met.text)))
    assert rows[1:] == [["1", "true", "", "", "", "", "", "", "", "0", "3.83", "Sangat Baik"]]
