from __future__ import annotations

import logging

import httpx
import pytest


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_database_redis_and_migrations(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "redis": "ok"},
    }


async def test_openapi_documents_the_region_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/regions" in spec["paths"]
    assert "/v1/regions/{code}" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_every_json_read_has_an_etag_and_answers_304(client: httpx.AsyncClient) -> None:
    for path in (
        "/v1/regions?province=32",
        "/v1/regions/32.71",
        "/v1/frameworks",
        "/v1/frameworks/gmsc-2023",
        "/v1/metrics/catalogue",
    ):
        first = await client.get(path)
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
        again = await client.get(path, headers={"If-None-Match": f'W/"other", {etag}'})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
    missing = await client.get("/v1/regions/99.99", headers={"If-None-Match": "*"})
    assert missing.status_code == 404  # errors are never turned into 304


async def test_openapi_documents_errors_as_problems(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    push = spec["paths"]["/v1/metrics:batch"]["post"]["responses"]
    for status in ("401", "413", "422", "429", "503"):
        assert list(push[status]["content"]) == ["application/problem+json"], status
    assert "Retry-After" in push["429"]["headers"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    export = spec["paths"]["/v1/rankings/export"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in export


async def test_every_json_answer_has_a_typed_schema(client: httpx.AsyncClient) -> None:
    # Generated clients get real types: every 2xx JSON body names its fields.
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]

    def typed(schema: dict[str, object]) -> bool:
        if "$ref" in schema:
            target = schemas[str(schema["$ref"]).rsplit("/", 1)[-1]]
            return bool(target.get("properties"))
        if schema.get("type") == "array":
            return typed(schema["items"])  # type: ignore[arg-type]
        return bool(schema.get("properties"))

    untyped = [
        f"{method.upper()} {path} {status}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2") and "application/json" in response.get("content", {})
        if not typed(response["content"]["application/json"]["schema"])
    ]
    assert untyped == []
    json_operations = sum(
        1
        for operations in spec["paths"].values()
        for operation in operations.values()
        if any(
            status.startswith("2") and "application/json" in response.get("content", {})
            for status, response in operation["responses"].items()
        )
    )
    assert json_operations >= 30  # the JSON endpoints, not a few that slipped through


async def test_readyz_is_quiet(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    """A probe called every few seconds must not write to the log each time (alembic's
    "Context impl" and "Will assume transactional DDL" lines did)."""
    caplog.set_level(logging.DEBUG)
    for _ in range(2):
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["migrations"] == "ok"
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
