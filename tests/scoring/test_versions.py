"""Versions of an instrument in force by period: the files say so and are checked, and the
composite reads, for each period, the e-government version in force (the worker, for real)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from services.kit.runtime import Runtime
from services.models import Assessment, ResultNode
from services.scoring.engine import (
    FrameworkError,
    Inputs,
    check_families,
    check_links,
    compile_framework,
    evaluate,
)
from services.scoring.frameworks import get_framework, in_force, link_sources
from tests.conftest import app_client, running_worker
from tests.scoring.test_recompute import ministry_key, seed_inputs, wait_for


def version(framework_id: str, family: str, in_force_: str, status: str = "official") -> str:
    return f"""
id: {framework_id}
name: {framework_id}
version: "1"
family: {family}
in_force: {in_force_}
status: {status}
index:
  id: total
  name: Total
  scale: {{min: 1, max: 5}}
  aggregation: mean
  children:
    - {{id: a, name: A, scale: {{min: 1, max: 5}}}}
"""


def test_the_shipped_versions_are_in_force_one_at_a_time() -> None:
    assert in_force("e-government", 2020).id == "spbe-2020"  # type: ignore[union-attr]
    assert in_force("e-government", 2025).id == "spbe-2020"  # type: ignore[union-attr]
    assert in_force("e-government", 2026).id == "ipd-2026"  # type: ignore[union-attr]
    assert in_force("e-government", 2019) is None
    assert in_force("smart-city", 2026).id == "gmsc-2023"  # type: ignore[union-attr]
    composite = get_framework("smartcity-spbe-linked").node("spbe_index")
    assert [link.ref for link in link_sources(composite.links, 2025)] == ["spbe-2020/spbe"]
    assert [link.ref for link in link_sources(composite.links, 2026)] == ["ipd-2026/ipd"]


def test_two_versions_of_one_instrument_in_force_together_are_refused() -> None:
    old = compile_framework(version("egov-a", "egov", "{to: 2025}"), file="a.yaml")
    new = compile_framework(version("egov-b", "egov", "{from: 2025}"), file="b.yaml")
    [issue] = check_families([old, new])
    assert str(issue) == (
        "b.yaml: in_force: egov-a and egov-b of family 'egov' are both in force for some "
        "period (periods up to 2025; periods from 2025)"
    )
    later = compile_framework(version("egov-c", "egov", "{from: 2026}"), file="c.yaml")
    assert check_families([old, later]) == []


def test_a_link_to_two_sources_in_force_together_is_refused() -> None:
    first = compile_framework(version("one", "x", "{from: 2020}"), file="one.yaml")
    second = compile_framework(version("two", "y", "{from: 2024}"), file="two.yaml")
    composite = compile_framework(
        """
id: both
name: Both
version: "1"
family: both
status: cerdas
status_note: ours
index:
  id: total
  name: Total
  scale: {min: 0, max: 100}
  aggregation: mean
  children:
    - id: linked
      name: Linked
      scale: {min: 0, max: 100}
      input: linked
      link:
        - {framework: one, node: total, scale: {min: 1, max: 5}}
        - {framework: two, node: total, scale: {min: 1, max: 5}}
""",
        file="both.yaml",
    )
    issues = [str(issue) for issue in check_links([first, second, composite])]
    assert issues == [
        "both.yaml: total/linked: links to one and two, which are both in force for some "
        "period: only one source may count per period"
    ]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("in_force: {from: 2026, to: 2025}", "in_force: 'to' 2025 is before 'from' 2026"),
        ("in_force: {from: '2026'}", "in_force: 'from' must be a year, got '2026'"),
        ("in_force: 2026", "'in_force' is a mapping with 'from' and/or 'to' (years)"),
        ("status: official-ish", "'status' must be one of official, provisional, cerdas"),
        ("status: provisional", "a provisional framework needs a 'status_note'"),
    ],
)
def test_a_bad_period_range_or_status_names_the_problem(header: str, message: str) -> None:
    text = version("bad", "bad", "{from: 2020}").replace(
        "in_force: {from: 2020}\nstatus: official\n", header + "\n"
    )
    with pytest.raises(FrameworkError) as caught:
        compile_framework(text, file="bad.yaml")
    assert any(message in str(issue) for issue in caught.value.issues), caught.value.issues


def test_a_file_without_provenance_is_an_instrument_of_its_own_and_provisional() -> None:
    framework = compile_framework(
        version("mine", "x", "{}").replace("family: x\n", "").replace("status: official\n", ""),
        file="mine.yaml",
    )
    assert (framework.family, framework.status) == ("mine", "provisional")
    assert framework.status_note == "the file declares no status"
    assert framework.in_force.covers(1999)
    assert framework.in_force.covers(2100)


def test_the_engine_counts_the_one_source_given_and_refuses_two() -> None:
    composite = get_framework("smartcity-spbe-linked")
    given = Inputs(
        linked={"gmsc-2023/final": "3.46", "ipd-2026/ipd": "2.50"},
        metrics={"integrated_apps": 148, "integrated_apps_target": 327},
    )
    result = evaluate(composite, given)
    # 0.4 × 86.5 + 0.4 × (2.50 − 1) ÷ 4 × 100 + 0.2 × 148 ÷ 327 × 100 = 58.65198… → 58.65
    assert result.index.value == Decimal("58.65")
    assert result.nodes["spbe_index"].inputs == ("linked:ipd-2026/ipd",)
    both = Inputs(linked={**given.linked, "spbe-2020/spbe": "3.72"}, metrics=given.metrics)
    with pytest.raises(Exception, match="give one linked value, not spbe-2020/spbe and ipd"):
        evaluate(composite, both)


async def composite_node(runtime: Runtime, period: int, node_id: str) -> ResultNode | None:
    async with runtime.sessionmaker() as session:
        row: ResultNode | None = await session.scalar(
            select(ResultNode)
            .join(Assessment, Assessment.id == ResultNode.assessment_id)
            .where(
                Assessment.framework_id == "smartcity-spbe-linked",
                Assessment.region_code == "32.71",
                Assessment.period == period,
                ResultNode.node_id == node_id,
            )
        )
    return row


@pytest.mark.slow
async def test_kota_bogor_composite_takes_spbe_in_2025_and_ipd_in_2026(live: Runtime) -> None:
    for period in (2025, 2026):
        await seed_inputs(live, "gmsc-2023", "32.71", period, {"final": "3.46"})
    await seed_inputs(live, "spbe-2020", "32.71", 2025, {"spbe": "3.72"})
    await seed_inputs(live, "ipd-2026", "32.71", 2026, {"ipd": "2.50"})
    # A 2026 SPBE figure from before the change (stored directly, as the API no longer opens
    # one): the composite must not read it, SPBE is not in force for 2026.
    await seed_inputs(live, "spbe-2020", "32.71", 2026, {"spbe": "5.00"})
    key = await ministry_key(live)
    async with running_worker(live), app_client(live) as client:
        points = [
            {"region": "32.71", "metric": metric, "period": f"{year}-{month}", "value": value}
            for year, month in ((2025, "12"), (2026, "06"))
            for metric, value in (("integrated_apps", 148), ("integrated_apps_target", 327))
        ]
        pushed = await client.post("/v1/metrics:batch", json={"points": points}, headers=key)
        assert pushed.status_code == 200, pushed.text

        async def composites_are(expected: dict[int, str]) -> bool:
            for period, value in expected.items():
                node = await composite_node(live, period, "linked_index")
                if node is None or node.value != Decimal(value):
                    return False
            return True

        # 2025: 0.4 × 86.5 + 0.4 × 68 + 0.2 × 45.26 = 70.85; 2026: IPD 2.50 → 37.5 → 58.65.
        await wait_for(lambda: composites_are({2025: "70.85", 2026: "58.65"}), seconds=90)
    spbe_2025 = await composite_node(live, 2025, "spbe_index")
    ipd_2026 = await composite_node(live, 2026, "spbe_index")
    assert spbe_2025 is not None
    assert ipd_2026 is not None
    assert (spbe_2025.value, spbe_2025.detail["inputs"]) == (
        Decimal("68.00"),
        ["linked:spbe-2020/spbe"],
    )
    assert (ipd_2026.value, ipd_2026.detail["inputs"]) == (
        Decimal("37.50"),
        ["linked:ipd-2026/ipd"],
    )
