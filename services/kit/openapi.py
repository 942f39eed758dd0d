"""The OpenAPI document, made to tell the truth about errors.

Every error leaves the API as RFC 9457 ``application/problem+json`` (:mod:`services.kit.errors`),
but FastAPI's generated document declares 422 as ``HTTPValidationError`` under
``application/json`` and no other error at all. :func:`install_openapi` post-processes the
generated document once (cached in ``app.openapi_schema``, as FastAPI does):

- a ``Problem`` component schema;
- every 422 body is ``application/problem+json`` → ``Problem``; the then unused
  ``HTTPValidationError`` and ``ValidationError`` components are removed;
- every operation lists the errors it can give, as ``Problem``: 400, 404, 422 and 503 always
  (the edge refuses unstorable text anywhere, any lookup may miss, the database may be down);
  401, 403 and 429 when the route checks a key, 429 when it counts anonymous callers; 408, 409
  and 413 for methods that carry a body, and 415 when the operation declares one. 429 and 503
  carry ``Retry-After``, 401 ``WWW-Authenticate``. A description (or content) the route
  declared itself is kept;
- two security schemes, both ``Authorization: Bearer``: ``ApiKey`` (a machine client's key) and
  ``SSO`` (a person's OpenID Connect access token, a JWT), and on every operation the security
  it has: either of them where a caller must authenticate, either or none where a caller may
  (anonymous reads), none for the probes. Swagger UI's Authorize takes either;
- a 201 or 202 declares its ``Location`` header.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI

from services.kit.errors import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"
_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
_FASTAPI_COMPONENTS = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Methods whose body the edge reads (and may refuse as too large or too slow).
_BODY_METHODS = frozenset({"post", "put", "patch"})


@dataclass(frozen=True)
class Callers:
    """The app's dependencies that check a key (401, 403, per-key 429) or count callers (429,
    and 401 for a key that is sent but unknown or revoked): what the document says each route
    may answer besides its own errors."""

    authenticating: tuple[Callable[..., Any], ...] = ()
    rate_limiting: tuple[Callable[..., Any], ...] = ()
    # Of ``authenticating``, those that let an anonymous caller through.
    optional: tuple[Callable[..., Any], ...] = ()


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: what was wrong, and where.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "description": "Identifies the kind of problem; https://cerdas.id/problems/<code>",
        },
        "title": {"type": "string", "description": "Short summary of the kind of problem"},
        "status": {
            "type": "integer",
            "minimum": 400,
            "maximum": 599,
            "description": "The HTTP status code",
        },
        "detail": {"type": "string", "description": "What was wrong with this request"},
        "code": {"type": "string", "description": "Stable machine-readable code, e.g. not-found"},
        "instance": {"type": "string", "description": "The request path"},
        "errors": {
            "type": "array",
            "description": "Each invalid part of the request",
            "items": {
                "type": "object",
                "required": ["in", "pointer", "detail"],
                "properties": {
                    "in": {
                        "type": "string",
                        "description": "The request part: path, query, header, body, …",
                    },
                    "pointer": {
                        "type": "string",
                        "description": "JSON pointer into that part",
                    },
                    "detail": {"type": "string", "description": "What is wrong there"},
                },
                "additionalProperties": True,
            },
        },
    },
    "additionalProperties": True,
}

_RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}

# status → (default description, headers)
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Malformed request", {}),
    401: (
        "No API key, or an unknown or revoked one",
        {
            "WWW-Authenticate": {
                "description": "Always `Bearer`",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    ),
    403: ("The key's role or regions do not allow this", {}),
    404: ("Not found", {}),
    408: ("The request body arrived too slowly", {}),
    409: ("Conflicts with the current state", {}),
    413: ("The request body is too large", {}),
    415: ("The request body's media type or content is not accepted", {}),
    422: ("The request is invalid; `errors` says where", {}),
    429: (
        "Too many requests from this caller",
        {"Retry-After": {**_RETRY_AFTER, "required": True}},
    ),
    503: (
        "A backing service (database, evidence store) is unavailable or not ready",
        {"Retry-After": _RETRY_AFTER},
    ),
}
_GENERIC_DESCRIPTIONS = frozenset({"Validation Error", "Successful Response", ""})


def _route_table(app: FastAPI) -> dict[tuple[str, str], Any]:
    """(path, method) → the route (or FastAPI's route context) that serves it.

    FastAPI >= 0.13x keeps included routers lazily (``iter_route_contexts`` flattens them);
    older versions list every ``APIRoute`` in ``app.routes``. Routes are duck-typed: what is
    used is ``path_format``, ``methods`` and ``dependant``.
    """
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = iterate(app.routes) if iterate is not None else app.routes
    table: dict[tuple[str, str], Any] = {}
    for route in routes:
        path, methods = getattr(route, "path_format", None), getattr(route, "methods", None)
        if path and methods and getattr(route, "dependant", None) is not None:
            for method in methods:
                table.setdefault((path, method.lower()), route)
    return table


def _dependency_calls(route: Any) -> Iterator[Callable[..., Any]]:
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            yield dependant.call
        stack.extend(dependant.dependencies)


def _dependency_statuses(route: Any, callers: Callers) -> set[int]:
    """The statuses the route's dependencies can answer: a key check 401, 403 (the key's role or
    regions) and 429 (per-key limit); the anonymous limit 429."""
    if route is None:
        return {401, 403, 429}  # a route not found: assume the worst
    calls = set(_dependency_calls(route))
    statuses: set[int] = set()
    if calls & set(callers.authenticating):
        statuses |= {401, 403, 429}
    if calls & set(callers.rate_limiting):
        # A bearer token sent on any route is checked: unknown (401), or a sign-in that maps
        # to no role (403).
        statuses |= {401, 403, 429}
    return statuses


SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "cerdas_…",
        "description": "A machine client's API key (`cerdas keys create`), bound to a role and, "
        "for super-apps and region operators, to their regions.",
    },
    "SSO": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A person's OpenID Connect access token from a trusted issuer "
        "(CERDAS_OIDC_ISSUERS, e.g. a government Keycloak realm); its claims give the role and "
        "regions.",
    },
}
_SIGNED_IN: list[dict[str, list[str]]] = [{"ApiKey": []}, {"SSO": []}]


def _security(route: Any, callers: Callers) -> list[dict[str, list[str]]]:
    """What the operation asks of its caller: a key or a sign-in (required, or optional), or
    nothing."""
    calls = set(_dependency_calls(route)) if route is not None else set()
    required = set(callers.authenticating) - set(callers.optional)
    if route is None or calls & required:
        return list(_SIGNED_IN)
    if calls & (set(callers.optional) | set(callers.rate_limiting)):
        return [{}, *_SIGNED_IN]
    return []


_LOCATION: dict[str, Any] = {
    "description": "Where the created resource (or the accepted job) is, when it has a URL "
    "of its own",
    "schema": {"type": "string", "format": "uri-reference"},
}


def _statuses(method: str, operation: dict[str, Any], route: Any, callers: Callers) -> list[int]:
    statuses = {400, 404, 422, 503}
    statuses |= _dependency_statuses(route, callers)
    if method in _BODY_METHODS:
        statuses |= {408, 409, 413}
    if "requestBody" in operation:
        statuses.add(415)
    return sorted(statuses)


def _is_fastapi_validation(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return len(content) == 1 and schema.get("$ref") == _FASTAPI_VALIDATION_REF


def _problem_response(status: int, declared: dict[str, Any] | None) -> dict[str, Any]:
    default, headers = ERRORS.get(status, ("The request failed", {}))
    response = dict(declared or {})
    if response.get("description", "") in _GENERIC_DESCRIPTIONS:
        response["description"] = default
    content = response.get("content") or {}
    if not content or _is_fastapi_validation(content):
        response["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
    if headers:
        response["headers"] = {**copy.deepcopy(headers), **response.get("headers", {})}
    return response


def _uses_ref(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_uses_ref(value, ref) for value in node.values())
    if isinstance(node, list):
        return any(_uses_ref(item, ref) for item in node)
    return False


def with_problems(
    document: dict[str, Any], routes: dict[tuple[str, str], Any], callers: Callers
) -> None:
    """Rewrite ``document`` (a generated OpenAPI document) in place; idempotent."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = copy.deepcopy(PROBLEM_SCHEMA)
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            route = routes.get((path, method))
            # The errors every such operation can give, and any other a route declares itself
            # (a DELETE's 409): each as a problem.
            declared = {int(status) for status in responses if int(status) >= 400}
            for status in sorted(set(_statuses(method, operation, route, callers)) | declared):
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
            operation["security"] = _security(route, callers)
            for created in ("201", "202"):
                if created in responses:
                    headers = responses[created].setdefault("headers", {})
                    headers.setdefault("Location", copy.deepcopy(_LOCATION))
            # Sorted by status for readers of the document.
            operation["responses"] = dict(sorted(responses.items()))
    # HTTPValidationError first: it is what references ValidationError. One still referenced
    # elsewhere (a route declaring it explicitly) stays, rather than leave a dangling $ref.
    for name in _FASTAPI_COMPONENTS:
        component = schemas.pop(name, None)
        if component is not None and _uses_ref(document, f"#/components/schemas/{name}"):
            schemas[name] = component


def install_openapi(app: FastAPI, callers: Callers) -> None:
    """Make ``app.openapi()`` return the generated document with truthful error responses."""
    generate = app.openapi
    processed: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = generate()
        if any(d is document for d in processed):
            return document
        with_problems(document, _route_table(app), callers)
        app.openapi_schema = document
        processed[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
