"""Client mistakes at the edge: limits, slow bodies, text Postgres cannot store, forged cursors,
rate limits. Each is a clear 4xx that names what was wrong and stores nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Assessment, EvidenceItem, MetricPoint
from tests.conftest import fresh_rate_window
from tests.evidence_store import EvidenceStore

MakeKey = Callable[..., Awaitable[dict[str, str]]]
ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
CSV = {"Content-Type": "text/csv"}
POINT = {"region": "32.71", "metric": "integrated_apps", "period": "2024-12", "value": 148}


async def stored_points(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(MetricPoint)) or 0)


@pytest.fixture
async def ministry(make_key: MakeKey) -> dict[str, str]:
    return await make_key("ministry-admin", name="Kemendagri")


def forged(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


async def test_a_nul_in_a_query_parameter_is_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/trends", params={"framework": "spbe-2020", "region": "\x00"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"in": "query", "pointer": "/region", "detail": "contains a NUL character"}
    ]


async def test_unstorable_text_in_a_json_body_is_422_and_stores_nothing(
    client: httpx.AsyncClient, ministry: dict[str, str], session: AsyncSession
) -> None:
    key_with_nul = {"points": [POINT, {**POINT, "dimensions": {"serv\x00ice": "x"}}]}
    response = await client.post("/v1/metrics:batch", json=key_with_nul, headers=ministry)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/points/1/dimensions/serv\\x00ice"
    surrogate = b'{"points": [{"region": "32.71", "metric": "integrated_apps", "unit": "\\ud800"}]}'
    response = await client.post(
        "/v1/metrics:batch",
        content=surrogate,
        headers={**ministry, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0] == {
        "in": "body",
        "pointer": "/points/0/unit",
        "detail": "contains an unpaired UTF-16 surrogate",
    }
    # An escaped backslash before "u0000" is ordinary text, not a NUL.
    literal = {"points": [{**POINT, "dimensions": {"note": "\\u0000"}}]}
    response = await client.post("/v1/metrics:batch", json=literal, headers=ministry)
    assert response.status_code != 422 or "NUL" not in response.text
    assert await stored_points(session) <= 1


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/metrics", ["not a number"]),
        ("/v1/metrics", [2**70]),
        ("/v1/regions", [{"code": "32"}]),
        ("/v1/assessments", ["not-a-uuid"]),
        ("/v1/audit", [-1]),
    ],
)
async def test_forged_cursors_are_422(
    client: httpx.AsyncClient, ministry: dict[str, str], path: str, key: list[Any]
) -> None:
    response = await client.get(path, params={"cursor": forged(key)}, headers=ministry)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/cursor"


async def test_a_json_body_over_the_limit_is_413_declared_or_streamed(
    client_for: ClientFor, ministry: dict[str, str], session: AsyncSession
) -> None:
    body = json.dumps({"points": [POINT] * 40}).encode()
    async with client_for(json_max_bytes=1000) as client:
        declared = await client.post(
            "/v1/metrics:batch",
            content=body,
            headers={**ministry, "Content-Type": "application/json"},
        )
        assert declared.status_code == 413, declared.text
        assert declared.json()["limit"] == 1000

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(body), 100):
                yield body[start : start + 100]

        streamed = await client.post(
            "/v1/metrics:batch",
            content=chunked(),
            headers={**ministry, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413, streamed.text
    assert await stored_points(session) == 0


async def test_a_body_that_stops_arriving_is_408(
    client_for: ClientFor, ministry: dict[str, str], session: AsyncSession
) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"region,metric,period,value\n"
        await asyncio.sleep(2)
        yield b"32.71,integrated_apps,2024-12,148\n"

    async with client_for(body_idle_seconds=0.3) as client:
        response = await client.post(
            "/v1/metrics:import", content=slow(), headers={**ministry, **CSV}
        )
    assert response.status_code == 408, response.text
    assert response.json()["code"] == "request-timeout"
    assert await stored_points(session) == 0


async def test_csv_lines_too_long_or_holding_a_nul_are_422(
    client_for: ClientFor, ministry: dict[str, str], session: AsyncSession
) -> None:
    header = b"region,metric,period,value\n"
    async with client_for(csv_max_line_bytes=1000) as client:
        long_line = header + b"32.71,integrated_apps,2024-12," + b"1" * 5000
        response = await client.post(
            "/v1/metrics:import", content=long_line, headers={**ministry, **CSV}
        )
        assert response.status_code == 422, response.text
        assert "CSV line 2 is longer than 1,000" in response.json()["detail"]
        nul = header + b"32.71,integrated_apps,2024-12,148\n32.71,integ\x00rated_apps,2024-11,1\n"
        response = await client.post("/v1/metrics:import", content=nul, headers={**ministry, **CSV})
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == "CSV line 3 contains a NUL character."
    assert await stored_points(session) == 0


async def test_rate_limits_answer_429_with_retry_after(
    client_for: ClientFor, ministry: dict[str, str]
) -> None:
    async with client_for(rate_limit_per_minute=3, anonymous_rate_limit_per_minute=2) as client:
        await fresh_rate_window()
        statuses = [
            (await client.get("/v1/metrics", headers=ministry)).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/v1/metrics", headers=ministry)
        assert limited.headers["content-type"] == "application/problem+json"
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        anonymous = [(await client.get("/v1/frameworks")).status_code for _ in range(3)]
        assert anonymous == [200, 200, 429]


async def test_the_audit_trail_refuses_truncate(session: AsyncSession) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with session.begin_nested():
            await session.execute(text("TRUNCATE audit_event"))


@pytest.mark.storage_backends("local", "s3")
async def test_evidence_form_fields_are_checked_and_leave_no_file(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    session: AsyncSession,
    evidence_store: EvidenceStore,
) -> None:
    from tests.ingest.test_evidence import PDF, upload

    operator = await make_key("region-operator", "32.71")
    assessment = Assessment(region_code="32.71", framework_id="gmsc-2023", period=2024)
    session.add(assessment)
    await session.commit()
    before = evidence_store.contents()
    long_title = await upload(
        client, operator, PDF, assessment_id=assessment.id, node_ids="output", title="x" * 301
    )
    assert long_title.status_code == 422, long_title.text
    assert long_title.json()["errors"][0]["pointer"] == "/title"
    nul_title = await upload(
        client, operator, PDF, assessment_id=assessment.id, node_ids="output", title="a\x00b"
    )
    assert nul_title.status_code == 422, nul_title.text
    many_parts = await client.post(
        "/v1/evidence",
        headers=operator,
        data={f"field{i}": "x" for i in range(20)},
        files={"file": ("a.pdf", PDF, "application/pdf")},
    )
    assert many_parts.status_code == 400, many_parts.text
    assert evidence_store.contents() == before
    assert await session.scalar(select(func.count()).select_from(EvidenceItem)) == 0


async def test_the_body_limit_is_the_endpoints_not_the_content_types(
    client_for: ClientFor,
) -> None:
    async with client_for(json_max_bytes=1000) as client:
        for content_type in ("text/csv", "multipart/form-data; boundary=x", "application/json"):
            response = await client.post(
                "/v1/assessments", content=b"x" * 5000, headers={"Content-Type": content_type}
            )
            assert response.status_code == 413, (content_type, response.text)
            assert response.headers["connection"] == "close"  # the body was never read


async def test_any_json_media_type_is_checked_for_unstorable_text(
    client: httpx.AsyncClient, ministry: dict[str, str]
) -> None:
    body = {"region": "32.71", "framework": "spbe-2020", "period": 2024, "stage": "f\x00"}
    response = await client.post(
        "/v1/assessments",
        content=json.dumps(body).encode(),
        headers={**ministry, "Content-Type": "application/vnd.cerdas+json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/stage"
    nested = b'{"points":[{"x":"\\u0000","y":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    response = await client.post(
        "/v1/metrics:batch",
        content=nested,
        headers={**ministry, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text


async def test_a_wrong_key_is_401_everywhere_and_guessing_is_rate_limited(
    client_for: ClientFor,
) -> None:
    async with client_for(anonymous_rate_limit_per_minute=3) as client:
        await fresh_rate_window()
        wrong = {"Authorization": "Bearer not-a-key"}
        statuses = [(await client.get("/v1/frameworks", headers=wrong)).status_code]
        statuses += [(await client.get("/v1/metrics", headers=wrong)).status_code for _ in range(3)]
        assert statuses == [401, 401, 401, 429]


async def test_an_empty_idempotency_key_is_refused(
    client: httpx.AsyncClient, ministry: dict[str, str], session: AsyncSession
) -> None:
    response = await client.post(
        "/v1/metrics:batch",
        json={"points": [POINT]},
        headers={**ministry, "Idempotency-Key": " "},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/Idempotency-Key"
    assert await stored_points(session) == 0


async def test_csv_with_carriage_return_line_endings_is_read_line_by_line(
    client_for: ClientFor, ministry: dict[str, str], session: AsyncSession
) -> None:
    rows = [b"region,metric,period,value"] + [
        f"32.71,integrated_apps,2024-{month:02d},{100 + month}".encode() for month in range(1, 13)
    ]
    async with client_for(csv_max_line_bytes=256) as client:
        response = await client.post(
            "/v1/metrics:import", content=b"\r".join(rows) + b"\r", headers={**ministry, **CSV}
        )
    assert response.status_code == 200, response.text
    assert await stored_points(session) == 12
