"""CORS for browser dashboards: allowed origins only (none by default), preflights answered,
and the headers a dashboard reads (ETag, Link, X-Request-ID) exposed."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx

ClientFor = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
DASHBOARD = "https://dasbor.example.go.id"


async def test_a_preflight_from_an_allowed_origin_is_answered(client_for: ClientFor) -> None:
    async with client_for(cors_origins=(DASHBOARD,)) as client:
        answer = await client.options(
            "/v1/assessments",
            headers={
                "Origin": DASHBOARD,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == DASHBOARD
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "if-none-match"):
        assert header in allowed
    assert "access-control-allow-credentials" not in answer.headers


async def test_an_answer_to_an_allowed_origin_exposes_etag_link_and_request_id(
    client_for: ClientFor,
) -> None:
    async with client_for(cors_origins=(DASHBOARD, "http://localhost:5173")) as client:
        answer = await client.get("/v1/regions", params={"limit": 1}, headers={"Origin": DASHBOARD})
        refused = await client.get("/v1/regions/99.99", headers={"Origin": DASHBOARD})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == DASHBOARD
    exposed = {
        h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "link", "x-request-id", "location", "retry-after"} <= exposed
    # Errors are readable by the dashboard too.
    assert refused.status_code == 404
    assert refused.headers["access-control-allow-origin"] == DASHBOARD


async def test_other_origins_get_no_cors_headers(client_for: ClientFor) -> None:
    async with client_for(cors_origins=(DASHBOARD,)) as client:
        answer = await client.get("/v1/regions", headers={"Origin": "https://evil.example"})
        preflight = await client.options(
            "/v1/regions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


async def test_no_origin_is_allowed_by_default(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/regions", headers={"Origin": DASHBOARD})
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options(
        "/v1/regions", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers
