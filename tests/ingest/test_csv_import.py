"""Bulk CSV loads: streamed request bodies, COPY into staging, the same rules as batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import MetricPoint

MakeKey = Callable[..., Awaitable[dict[str, str]]]
CSV = {"Content-Type": "text/csv"}


async def test_csv_points_are_loaded_with_dimensions(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    ministry = await make_key("ministry-admin")
    body = (
        "region,metric,period,value,dimensions\r\n"
        "32.71,integrated_apps,2024-12,148,\r\n"
        "32.16,service_transactions,2024-11,5230,service=adminduk\r\n"
        '"32.16",citizen_satisfaction,2024,3.41,\r\n'
    )
    response = await client.post(
        "/v1/metrics:import", content=body.encode(), headers={**ministry, **CSV}
    )
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["created"] == 3
    rows = (await session.scalars(select(MetricPoint).order_by(MetricPoint.id))).all()
    assert [(r.region_code, r.metric, r.dimensions) for r in rows] == [
        ("32.71", "integrated_apps", {}),
        ("32.16", "service_transactions", {"service": "adminduk"}),
        ("32.16", "citizen_satisfaction", {}),
    ]


async def test_csv_rejections_name_the_row(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    ministry = await make_key("ministry-admin")
    body = (
        "region,metric,period,value\n"
        "32.71,integrated_apps,2024-12,148\n"
        "32.71,integrated_apps,2024-11,lots\n"
        "32.71,integrated_apps,2024-10\n"
    )
    response = await client.post("/v1/metrics:import", content=body, headers={**ministry, **CSV})
    assert response.status_code == 422
    assert response.json()["rejected"] == [
        {"index": 2, "field": "value", "reason": "value 'lots' is not a number"},
        {"index": 3, "field": "", "reason": "row has 3 fields, the header 4"},
    ]
    assert await session.scalar(select(func.count()).select_from(MetricPoint)) == 0


async def test_csv_needs_a_csv_body_and_a_known_header(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    ministry = await make_key("ministry-admin")
    json_type = {**ministry, "Content-Type": "application/json"}
    wrong_type = await client.post("/v1/metrics:import", content=b"{}", headers=json_type)
    assert wrong_type.status_code == 415
    bad_header = await client.post(
        "/v1/metrics:import", content=b"kode,nilai\n32.71,1\n", headers={**ministry, **CSV}
    )
    assert bad_header.status_code == 422
    assert "CSV header must name region" in bad_header.json()["detail"]
    empty = await client.post("/v1/metrics:import", content=b"", headers={**ministry, **CSV})
    assert empty.status_code == 422


async def test_a_super_app_csv_with_a_foreign_region_stores_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    bebunge = await make_key("super-app", "32.16", name="Bebunge")
    body = (
        "region,metric,period,value\n"
        "32.16,active_users,2024-12,1000\n"
        "32.71,active_users,2024-12,9\n"
    )
    response = await client.post("/v1/metrics:import", content=body, headers={**bebunge, **CSV})
    assert response.status_code == 403
    assert await session.scalar(select(func.count()).select_from(MetricPoint)) == 0


async def test_a_100000_point_csv_streams_in_and_is_stored(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    ministry = await make_key("ministry-admin")
    listed = await client.get("/v1/regions", params={"limit": 1000})
    codes = [r["code"] for r in listed.json()["items"] if r["kind"] != "provinsi"][:500]
    months = [f"{2021 + n // 12}-{n % 12 + 1:02d}" for n in range(50)]  # 2021-01 … 2025-02
    columns = [
        ("active_users", ""),
        ("integrated_apps", ""),
        ("integrated_apps_target", ""),
        ("service_transactions", "service=adminduk"),
    ]

    async def body() -> AsyncIterator[bytes]:
        yield b"region,metric,period,value,dimensions\n"
        rows: list[str] = []
        for code in codes:
            for month in months:
                for metric, dimensions in columns:
                    rows.append(f"{code},{metric},{month},{len(rows) + 1},{dimensions}\n")
            if len(rows) >= 5000:
                yield "".join(rows).encode()
                rows = []
        yield "".join(rows).encode()

    response = await client.post(
        "/v1/metrics:import", content=body(), headers={**ministry, **CSV}, timeout=600
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json()["counts"] == {
        "received": 100_000,
        "created": 100_000,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    assert await session.scalar(select(func.count()).select_from(MetricPoint)) == 100_000
    # Integration metrics feed the linked index: one assessment per region and year touched.
    assert response.json()["recomputes_requested"] == 500 * 5


async def test_a_csv_import_retried_with_its_idempotency_key_stores_once(
    client: httpx.AsyncClient, make_key: MakeKey, session: AsyncSession
) -> None:
    ministry = await make_key("ministry-admin")
    body = b"region,metric,period,value\n32.71,integrated_apps,2024-12,148\n"
    headers = {**ministry, **CSV, "Idempotency-Key": "bsw-export-2024-12"}
    first = await client.post("/v1/metrics:import", content=body, headers=headers)
    again = await client.post("/v1/metrics:import", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["counts"]["created"] == 1
    assert again.headers["idempotent-replayed"] == "true"
    other = body.replace(b"148", b"150")
    reused = await client.post("/v1/metrics:import", content=other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency-key-reused"
    stored = await session.scalars(select(MetricPoint.value))
    assert [int(value) for value in stored] == [148]
