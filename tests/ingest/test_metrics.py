"""Metric pushes from super-apps, against real Postgres."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.domain.recompute import service as recompute
from services.models import Assessment, AuditEvent, MetricPoint, RecomputeRequest
from services.scoring.frameworks import registry

MakeKey = Callable[..., Awaitable[dict[str, str]]]
BSW = [
    {
        "region": "32.71",
        "metric": "integrated_apps",
        "period": "2024-12",
        "value": 148,
        "unit": "apps",
    },
    {"region": "32.71", "metric": "integrated_apps_target", "period": "2024-12", "value": 327},
]


async def stored(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(MetricPoint)) or 0)


async def push(
    client: httpx.AsyncClient, key: dict[str, str], points: list[dict[str, Any]], **params: Any
) -> httpx.Response:
    query = {name: str(value).lower() for name, value in params.items()}
    return await client.post(
        "/v1/metrics:batch", json={"points": points}, headers=key, params=query
    )


@pytest.fixture
async def bsw(make_key: MakeKey) -> dict[str, str]:
    return await make_key("super-app", "32.71", name="Bogor Single Window")


async def test_bogor_single_window_pushes_and_reads_back(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    response = await push(client, bsw, BSW)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    assert response.json()["counts"] == {
        "received": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    page = (
        await client.get("/v1/metrics", params={"region": "32.71", "year": 2024}, headers=bsw)
    ).json()
    assert {(p["metric"], p["period"], p["value"]) for p in page["items"]} == {
        ("integrated_apps", "2024-12", "148"),
        ("integrated_apps_target", "2024-12", "327"),
    }


async def test_a_push_marks_the_metric_driven_assessment_dirty_in_the_same_transaction(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    response = await push(client, bsw, BSW)
    assert response.json()["recomputes_requested"] == 1
    assessment = await session.scalar(
        select(Assessment).where(
            Assessment.region_code == "32.71", Assessment.framework_id == "smartcity-spbe-linked"
        )
    )
    assert assessment is not None
    assert assessment.period == 2024
    request = await session.get(RecomputeRequest, assessment.id)
    assert request is not None
    assert request.revision == assessment.input_revision == 1


async def test_marking_readers_costs_two_statements_however_many_frameworks_read_a_metric(
    client: httpx.AsyncClient,
    bsw: dict[str, str],
    session: AsyncSession,
    connection: AsyncConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = registry()
    linked = shipped["smartcity-spbe-linked"]
    twin = dataclasses.replace(linked, id="smartcity-spbe-linked-twin")  # reads the same metrics
    monkeypatch.setattr(recompute, "registry", lambda: {**shipped, twin.id: twin})
    on_assessments: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if re.search(r"\bassessment\b", statement):  # the table, not assessment_id
            on_assessments.append(statement)

    event.listen(connection.sync_connection, "before_cursor_execute", seen)
    try:
        response = await push(client, bsw, BSW)
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", seen)
    assert response.json()["recomputes_requested"] == 2
    # Create the missing ones; bump them and their outbox rows: one statement each for both
    # frameworks (framework by framework, it was three per framework: create, find, bump).
    assert len(on_assessments) == 2, on_assessments
    marked = await session.execute(
        select(Assessment.framework_id, RecomputeRequest.revision)
        .join(RecomputeRequest, RecomputeRequest.assessment_id == Assessment.id)
        .where(Assessment.region_code == "32.71", Assessment.period == 2024)
    )
    assert sorted(tuple(row) for row in marked) == [(linked.id, 1), (twin.id, 1)]


async def test_a_json_batch_looks_up_only_the_regions_it_names(
    client: httpx.AsyncClient, make_key: MakeKey, connection: AsyncConnection
) -> None:
    ministry = await make_key("ministry-admin")
    asked: list[tuple[str, Any]] = []

    def seen(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if re.search(r"\bFROM region\b", statement):
            asked.append((" ".join(statement.split()), parameters))

    points = [*BSW, {**BSW[0], "region": "99.99"}]  # Kota Bogor twice, and no such region
    event.listen(connection.sync_connection, "before_cursor_execute", seen)
    try:
        response = await push(client, ministry, points, atomic=False)
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", seen)
    assert response.status_code == 200, response.text
    assert response.json()["rejected"][0]["reason"].startswith("unknown region '99.99'")
    # Not all five hundred codes for two points: one lookup of the two named.
    [(statement, parameters)] = asked
    assert "WHERE code = ANY" in statement
    assert sorted(*parameters) == ["32.71", "99.99"]


async def test_a_key_for_another_region_gets_403_and_nothing_is_stored(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    bebunge = await make_key("super-app", "32.16", name="Bebunge")
    mixed = [{**BSW[0], "region": "32.16"}, BSW[1]]  # one of its own, one of Kota Bogor's
    response = await push(client, bebunge, mixed, atomic=False)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "32.71" in response.json()["detail"]
    assert await stored(session) == 0


async def test_writes_need_a_valid_key_of_a_writing_role(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    assert (await push(client, {}, BSW)).status_code == 401
    assert (await push(client, {"Authorization": "Bearer nope"}, BSW)).status_code == 401
    assessor = await make_key("assessor")
    assert (await push(client, assessor, BSW)).status_code == 403
    ministry = await make_key("ministry-admin")
    assert (await push(client, ministry, BSW)).status_code == 200


async def test_replaying_with_an_idempotency_key_stores_once(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    headers = {**bsw, "Idempotency-Key": "bsw-2024-12-run-1"}
    responses = [await push(client, headers, BSW) for _ in range(10)]
    assert {r.status_code for r in responses} == {200}
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["counts"]["created"] == 2  # the first response, replayed
    assert "idempotent-replayed" not in responses[0].headers
    assert responses[9].headers["idempotent-replayed"] == "true"
    assert await stored(session) == 2
    changed = [{**BSW[0], "value": 150}]
    reused = await push(client, headers, changed)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency-key-reused"
    assert await stored(session) == 2


async def test_same_value_is_unchanged_and_a_new_value_is_an_audited_update(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    await push(client, bsw, BSW)
    again = await push(client, bsw, BSW)
    assert again.json()["counts"]["unchanged"] == 2
    assert again.json()["recomputes_requested"] == 0
    grown = await push(client, bsw, [{**BSW[0], "value": 152}, BSW[1]])
    assert grown.json()["counts"] == {
        "received": 2,
        "created": 0,
        "updated": 1,
        "unchanged": 1,
        "rejected": 0,
    }
    events = (
        await session.scalars(select(AuditEvent).where(AuditEvent.action == "metric.update"))
    ).all()
    assert len(events) == 1
    assert events[0].entity_id == "32.71/integrated_apps/2024-12"
    assert (events[0].before, events[0].after) == ({"value": "148"}, {"value": "152"})
    assert events[0].actor_name == "Bogor Single Window"
    assert events[0].role == "super-app"


BAD_POINTS = [
    ({"metric": "integrated_apps_v2"}, "metric", "unknown metric 'integrated_apps_v2'"),
    ({"unit": "percent"}, "unit", "integrated_apps is measured in 'apps', not 'percent'"),
    ({"value": -3}, "value", "value -3 is out of range for integrated_apps"),
    ({"value": 14.5}, "value", "integrated_apps is a count; 14.5 is not a whole number"),
    ({"value": "many"}, "value", "value 'many' is not a number"),
    ({"period": "2099-01"}, "period", "period 2099-01 is in the future"),
    ({"period": "2024"}, "period", "period '2024' does not fit integrated_apps's grain (month"),
    ({"period": "2024-13"}, "period", "period '2024-13' is not a calendar date"),
    ({"region": "99.99"}, "region", "unknown region '99.99'"),
    (
        {"dimensions": {"service": "adminduk"}},
        "dimensions",
        "integrated_apps has no dimension 'service'",
    ),
    ({"colour": "red"}, "colour", "unknown field 'colour'"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_POINTS)
async def test_bad_points_are_rejected_with_index_and_reason(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    session: AsyncSession,
    change: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    ministry = await make_key("ministry-admin")
    response = await push(client, ministry, [BSW[1], {**BSW[0], **change}])
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422  # the problem's status, not the summary's
    assert body["code"] == "batch-rejected"
    assert body["stored"] is False
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["field"]) == (1, field)
    assert rejected["reason"].startswith(reason), rejected["reason"]
    assert await stored(session) == 0  # all or nothing


async def test_the_body_is_read_as_json_reads_it_and_refused_where_it_breaks(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    headers = {**bsw, "Content-Type": "application/json"}
    broken = await client.post("/v1/metrics:batch", content=b'{"points": [', headers=headers)
    assert broken.status_code == 422
    assert broken.json()["errors"] == [
        {"in": "body", "pointer": "/12", "detail": "JSON decode error"}
    ]
    # NaN is JSON as Python reads it: one point rejected with its reason, not the whole body.
    body = b'{"points": [{"region": "32.71", "metric": "integrated_apps", "period": "2024-12",'
    response = await client.post(
        "/v1/metrics:batch", content=body + b' "value": NaN}]}', headers=headers
    )
    assert response.status_code == 422
    [rejected] = response.json()["rejected"]
    assert (rejected["index"], rejected["field"]) == (0, "value")
    assert "not a finite number" in rejected["reason"]
    assert await stored(session) == 0


async def test_atomic_false_stores_the_good_points_only(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    points = [BSW[0], {**BSW[1], "value": -1}, {**BSW[0], "period": "2024-11"}]
    response = await push(client, bsw, points, atomic=False)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "partial"
    assert body["counts"]["created"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    assert await stored(session) == 2


async def test_a_point_twice_in_one_batch_is_rejected(
    client: httpx.AsyncClient, bsw: dict[str, str]
) -> None:
    response = await push(client, bsw, [BSW[0], {**BSW[0], "value": 149}])
    assert response.json()["rejected"] == [
        {"index": 1, "field": "", "reason": "duplicate of point 0 in this request"}
    ]


async def test_dry_run_reports_without_storing(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    response = await push(client, bsw, BSW, dry_run=True)
    assert response.status_code == 200
    assert response.json()["status"] == "dry_run"
    assert response.json()["counts"]["created"] == 2
    assert await stored(session) == 0


async def test_timestamps_dimensions_and_year_grain(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    bebunge = await make_key("super-app", "32.16", name="Bebunge")
    points = [
        {
            "region": "32.16",
            "metric": "service_transactions",
            "value": 5230,
            "timestamp": "2024-11-30T20:00:00+00:00",
            "dimensions": {"service": "adminduk"},
        },
        {
            "region": "32.16",
            "metric": "service_transactions",
            "period": "2024-12",
            "value": 880,
            "dimensions": {"service": "ambulans"},
        },
        {"region": "32.16", "metric": "citizen_satisfaction", "period": "2024", "value": "3.41"},
    ]
    response = await push(client, bebunge, points)
    assert response.status_code == 200, response.text
    rows = (await session.scalars(select(MetricPoint).order_by(MetricPoint.id))).all()
    # 20:00 UTC on 30 November is 03:00 WIB on 1 December.
    assert [(r.period, r.dimension_key) for r in rows] == [
        ("2024-12", "service=adminduk"),
        ("2024-12", "service=ambulans"),
        ("2024", ""),
    ]
    assert str(rows[2].value) == "3.41"


async def test_more_than_5000_points_is_refused(
    client: httpx.AsyncClient, bsw: dict[str, str]
) -> None:
    response = await push(client, bsw, [BSW[0]] * 5001)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/points"


async def test_catalogue_lists_units_ranges_and_grains(client: httpx.AsyncClient) -> None:
    entries = {
        entry["key"]: entry for entry in (await client.get("/v1/metrics/catalogue")).json()["items"]
    }
    assert {
        "integrated_apps",
        "integrated_apps_target",
        "active_users",
        "service_transactions",
        "citizen_satisfaction",
        "complaints_resolved_ratio",
    } <= set(entries)
    assert entries["citizen_satisfaction"]["min"] == "1"
    assert entries["citizen_satisfaction"]["max"] == "4"
    assert "adminduk" in entries["service_transactions"]["dimensions"]["service"]


async def test_every_created_point_is_audited_with_its_request_id(
    client: httpx.AsyncClient, bsw: dict[str, str], session: AsyncSession
) -> None:
    pushed = await push(client, {**bsw, "X-Request-ID": "bsw-push-1"}, BSW)
    assert pushed.json()["counts"]["created"] == 2
    events = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "metric.create")
            .order_by(AuditEvent.entity_id)
        )
    ).all()
    # One row per series and request, mapping each new point's period to its value.
    assert [(e.entity, e.entity_id, e.before, e.after) for e in events] == [
        (
            "metric_series",
            f"{p['region']}/{p['metric']}",
            None,
            {"created": {p["period"]: str(p["value"])}},
        )
        for p in sorted(BSW, key=lambda p: f"{p['region']}/{p['metric']}")
    ]
    assert {(e.request_id, e.actor_name, e.role) for e in events} == {
        ("bsw-push-1", "Bogor Single Window", "super-app")
    }
