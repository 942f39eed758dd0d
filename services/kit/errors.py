"""One error type and one handler: every failure leaves the API as RFC 9457 problem+json.

Expected failures are raised as :class:`ProblemError` (or a subclass) with their HTTP status and a
stable ``code``; the handler renders them. Request validation errors and unhandled exceptions are
rendered in the same shape, so a client parses exactly one error format.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://cerdas.id/problems/"

log = logging.getLogger(__name__)


class ProblemError(Exception):
    """An expected failure with its HTTP status, a stable code and what was wrong where."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.errors = list(errors or [])
        self.headers = headers or {}
        self.extensions = extensions

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": _TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


class NotFound(ProblemError):
    status = 404
    code = "not-found"
    title = "Not found"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unprocessable(ProblemError):
    status = 422
    code = "validation-failed"
    title = "Validation failed"


def invalid(where: str, pointer: str, detail: str, message: str) -> Unprocessable:
    """A 422 naming the part of the request (query, header, body) and the pointer into it."""
    return Unprocessable(message, errors=[{"in": where, "pointer": pointer, "detail": detail}])


class PayloadTooLarge(ProblemError):
    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class RequestTimeout(ProblemError):
    status = 408
    code = "request-timeout"
    title = "Request body too slow"


class Unavailable(ProblemError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


class ProblemHTTPException(StarletteHTTPException):
    """A problem raised while the request body is being read.

    FastAPI turns any other exception raised while it reads a body into a bare 400; an
    ``HTTPException`` it lets through, and the handler below renders the problem it carries.
    """

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.status, problem.detail, problem.headers)
        self.problem = problem


# Errors that mean "the database is not reachable right now", not "this request is wrong".
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database cannot be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, _UNAVAILABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def problem_response(problem: ProblemError, instance: str | None = None) -> JSONResponse:
    headers = dict(problem.headers)
    if problem.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(
        problem.to_problem(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _pointer(loc: Sequence[int | str]) -> str:
    """A validation location as a JSON pointer into the request part it names."""
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def validation_problem(exc: RequestValidationError) -> ProblemError:
    errors = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = str(loc[0]) if loc else "body"
        errors.append(
            {"in": where, "pointer": _pointer(loc[1:]), "detail": err.get("msg", "invalid")}
        )
    first = errors[0] if errors else {"in": "body", "pointer": "/", "detail": "invalid"}
    return Unprocessable(
        f"{first['in']} {first['pointer']}: {first['detail']}"
        + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
        errors=errors,
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, ProblemHTTPException):
            return problem_response(exc.problem, request.url.path)
        problem = ProblemError(
            str(exc.detail),
            status=exc.status_code,
            code="not-found" if exc.status_code == 404 else f"http-{exc.status_code}",
            title="Not found" if exc.status_code == 404 else "HTTP error",
            headers=dict(exc.headers or {}),
        )
        return problem_response(problem, request.url.path)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = ProblemError(
            "The server failed to handle this request; it has been logged.",
            status=500,
            code="internal-error",
            title="Internal server error",
        )
        return problem_response(problem, request.url.path)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, sa_exc.TimeoutError):
            log.warning("no free database connection for %s %s", request.method, request.url.path)
            problem: ProblemError = Unavailable(
                "Every database connection is busy; retry in a moment.",
                code="busy",
                headers={"Retry-After": "1"},
            )
        elif database_unavailable(exc):
            log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
            # An OSError can also come from the evidence store (disk gone, full): also a backing
            # service that is down, not a mistake of the client's.
            # Whether a commit that lost its connection went through cannot be known here: say
            # so, and point at the way to retry safely.
            problem = Unavailable(
                "A backing service (the database or the evidence store) is unreachable. Retry "
                "shortly: a write retried with the same Idempotency-Key is applied at most once, "
                "and pushing the same points or evidence again stores no copy.",
                code="database-unavailable",
                headers={"Retry-After": "5"},
            )
        else:
            return await on_unhandled(request, exc)
        return problem_response(problem, request.url.path)

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Registered by class (not only under Exception), so they are answered by the exception
    # middleware and not re-raised into the server's log as crashes.
    for kind in (sa_exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        app.add_exception_handler(kind, on_database)
    app.add_exception_handler(Exception, on_unhandled)
