"""The OpenAPI document is a contract a client generator can trust: every operation says how
it authenticates and which problems it can answer, request bodies carry examples, list
endpoints answer pages; and the docs pages work on a network without the internet."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services import __version__
from services.cli import app as cli

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, item[method])
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    ]


def test_every_operation_declares_its_security(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["SSO"] == {**schemes["SSO"], "type": "http", "bearerFormat": "JWT"}
    signed_in = [{"ApiKey": []}, {"SSO": []}]
    for method, path, operation in operations(spec):
        where = f"{method} {path}"
        assert "security" in operation, where
        security = operation["security"]
        if path in ("/healthz", "/readyz"):
            assert security == [], where
        elif security == signed_in:  # a key or a sign-in is required
            assert "401" in operation["responses"], where
        else:  # anonymous callers allowed (public reads)
            assert security == [{}, *signed_in], where
    required = {path for _, path, op in operations(spec) if op["security"] == signed_in}
    assert {"/v1/me", "/v1/audit", "/v1/assessments/{assessment_id}/inputs"} <= required
    anonymous = {path for _, path, op in operations(spec) if {} in op["security"]}
    assert {"/v1/regions", "/v1/rankings", "/v1/assessments/{assessment_id}"} <= anonymous


def test_every_error_an_operation_can_give_is_a_problem(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "HTTPValidationError" not in str(spec)
    for method, path, operation in operations(spec):
        where = f"{method} {path}"
        statuses = set(operation["responses"])
        assert {"400", "404", "422", "503"} <= statuses, where
        if method in ("POST", "PUT", "PATCH"):
            assert {"409", "413"} <= statuses, where
        if "requestBody" in operation:
            assert "415" in statuses, where
        if operation["security"] != []:
            assert {"401", "403", "429"} <= statuses, where
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, f"{where} {status}"
                assert response["description"], f"{where} {status}"
        if "401" in statuses:
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], where


def test_every_json_request_body_has_an_example(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for method, path, operation in operations(spec):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        name = body["schema"]["$ref"].rsplit("/", 1)[-1]
        assert schemas[name].get("examples"), f"{method} {path}: {name} has no example"


LISTS = (
    "/v1/regions",
    "/v1/frameworks",
    "/v1/assessments",
    "/v1/assessments/{assessment_id}/evidence-requests",
    "/v1/metrics",
    "/v1/metrics/catalogue",
    "/v1/evidence",
    "/v1/webhooks",
    "/v1/webhooks/{subscription_id}/deliveries",
    "/v1/keys",
    "/v1/me/assignments",
    "/v1/audit",
)


def test_every_list_endpoint_answers_a_page(spec: dict[str, Any]) -> None:
    """No bare arrays: lists are {items, next_cursor} (reports such as a ranking are objects
    of their own)."""
    schemas = spec["components"]["schemas"]
    for method, path, operation in operations(spec):
        ok = operation["responses"].get("200", {}).get("content", {}).get("application/json")
        if method == "GET" and ok is not None:
            assert ok["schema"].get("type") != "array", f"{method} {path} answers a bare array"
    for path in LISTS:
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        component = schemas[ok["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert set(component["properties"]) == {"items", "next_cursor"}, path


def test_created_answers_declare_their_location(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        for status in ("201", "202"):
            if status in operation["responses"]:
                headers = operation["responses"][status]["headers"]
                assert "Location" in headers, f"{method} {path}"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_need_nothing_from_the_internet(
    client: httpx.AsyncClient, page: str
) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert "text/html" in html.headers["content-type"]
    # No absolute URL at all: every script, style sheet, font and icon is served by Cerdas.
    assert re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", html.text) == []
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', html.text) + re.findall(
        r"url: '(/[^']+)'", html.text
    )
    assert any(asset.endswith(".js") for asset in assets), html.text
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 100, asset


async def test_swagger_ui_offers_authorize_for_both_schemes(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html
    assert "/openapi.json" in html


def test_the_cli_prints_its_version() -> None:
    answer = CliRunner().invoke(cli, ["--version"])
    assert answer.exit_code == 0
    assert answer.stdout.strip() == f"cerdas {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)
