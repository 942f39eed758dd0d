"""The edge of the API: what a request may be before any endpoint sees it.

- **Body size by endpoint**: evidence uploads, CSV imports and every other body (JSON) each
  have a limit (settings), chosen by the endpoint, not by the Content-Type sent. A declared
  ``Content-Length`` over it is answered 413 at once; a body that grows past it while streaming
  is cut off with 413.
- **Slow bodies**: a client that sends nothing for ``body_idle_seconds``, or takes longer than
  ``body_total_seconds`` in all, gets 408. No database connection is held meanwhile (sessions
  connect on first use, after the body has arrived), so a slow client costs a socket, not a
  connection that others need.
- **Text Postgres cannot store**: a NUL character, or a lone UTF-16 surrogate, in the path, a
  query parameter or a JSON body (any type FastAPI parses as JSON) is a 422 naming where it is,
  before any work is done.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.errors import (
    PayloadTooLarge,
    ProblemError,
    ProblemHTTPException,
    RequestTimeout,
    invalid,
    problem_response,
)
from services.kit.settings import Settings

# Boundaries, part headers and the small form fields around an evidence file.
MULTIPART_OVERHEAD = 64 * 1024
# The two endpoints whose bodies may be larger than a JSON body.
EVIDENCE_UPLOAD = "/v1/evidence"
CSV_IMPORT = "/v1/metrics:import"
# A JSON text escape that decodes to something Postgres cannot store: \u0000 or a surrogate.
_SUSPECT_ESCAPE = re.compile(rb"\\u(0000|[dD][89abAB][0-9a-fA-F]{2}|[dD][c-fC-F][0-9a-fA-F]{2})")


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored as Postgres text, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate"
    return None


def storable(value: Any) -> Any:
    """``value`` (JSON data) with every string made storable (NUL → U+FFFD, a lone surrogate
    → "?"), for records the server writes itself (stored answers), where refusing is no option."""
    if isinstance(value, str):
        if unstorable(value) is None:
            return value
        cleaned = value.replace("\x00", "\ufffd")
        return cleaned.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def _pointer_part(part: str | int) -> str:
    text = str(part).replace("~", "~0").replace("/", "~1")
    return text.encode("unicode_escape").decode("ascii") if unstorable(text) else text


def find_unstorable(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str, str] | None:
    """The JSON pointer to the first unstorable string (a key or a value) and why, or None."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            reason = unstorable(current)
            if reason:
                return "/" + "/".join(_pointer_part(p) for p in where), reason
        elif isinstance(current, dict):
            for key, item in reversed(list(current.items())):
                reason = unstorable(key)
                if reason:
                    pointer = "/" + "/".join(_pointer_part(p) for p in (*where, key))
                    return pointer, f"the member name {reason.removeprefix('contains ')}"
                stack.append((item, (*where, key)))
        elif isinstance(current, list):
            stack.extend((item, (*where, i)) for i, item in reversed(list(enumerate(current))))
    return None


def _query_problem(query_string: bytes) -> ProblemError | None:
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None  # the framework reports a malformed query itself
    for name, value in pairs:
        for text in (name, value):
            reason = unstorable(text)
            if reason:
                shown = _pointer_part(name)
                return invalid("query", f"/{shown}", reason, f"query /{shown}: {reason}")
    return None


def is_json(content_type: str) -> bool:
    """Whether FastAPI parses a body of ``content_type`` as JSON (``application/json``,
    ``application/*+json``, or no type at all)."""
    kind = content_type.split(";")[0].strip().lower()
    if not kind:
        return True
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _chunks(body: bytes) -> Iterator[Message]:
    yield {"type": "http.request", "body": body, "more_body": False}


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> tuple[str, int]:
        """The body limit of the endpoint at ``path``: decided by what the endpoint is, never by
        the Content-Type a client chooses to send."""
        if path == EVIDENCE_UPLOAD:
            return "an evidence upload", self.settings.evidence_max_bytes + MULTIPART_OVERHEAD
        if path == CSV_IMPORT:
            return "a CSV import", self.settings.csv_max_bytes
        return "a request body", self.settings.json_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except ProblemHTTPException as exc:  # raised outside any endpoint's handlers
            await problem_response(exc.problem, scope.get("path"))(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        reason = unstorable(path)
        if reason:
            problem = invalid("path", "/", reason, f"The path {reason}.")
            await problem_response(problem, None)(scope, receive, send)
            return
        problem_in_query = _query_problem(scope.get("query_string", b""))
        if problem_in_query is not None:
            await problem_response(problem_in_query, path)(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        what, limit = self.limit_for(path)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            too_large = PayloadTooLarge(
                f"{what.capitalize()} may be at most {limit:,} bytes; this one declares "
                f"{int(declared):,}.",
                limit=limit,
                # The body was not read: the connection cannot carry another request.
                headers={"Connection": "close"},
            )
            await problem_response(too_large, path)(scope, receive, send)
            return

        limited = self._limited_receive(receive, what, limit)
        if path not in (EVIDENCE_UPLOAD, CSV_IMPORT) and is_json(headers.get("content-type", "")):
            body = await self._read_all(limited)
            checked = self._check_json(body, path)
            if checked is not None:
                await problem_response(checked, path)(scope, receive, send)
                return
            replay = _chunks(body)

            async def replayed() -> Message:
                for message in replay:
                    return message
                return await receive()  # after the body: wait for a disconnect, as usual

            await self.app(scope, replayed, send)
            return
        await self.app(scope, limited, send)

    def _limited_receive(self, receive: Receive, what: str, limit: int) -> Receive:
        settings = self.settings
        started = time.monotonic()
        received = 0
        finished = False

        async def limited() -> Message:
            nonlocal received, finished
            if finished:
                return await receive()
            left = settings.body_total_seconds - (time.monotonic() - started)
            wait = min(settings.body_idle_seconds, left)
            try:
                if wait <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise ProblemHTTPException(
                    RequestTimeout(
                        f"The request body arrived too slowly (nothing for "
                        f"{settings.body_idle_seconds:g} s, or more than "
                        f"{settings.body_total_seconds:g} s in all); nothing was stored.",
                        headers={"Connection": "close"},
                    )
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ProblemHTTPException(
                        PayloadTooLarge(
                            f"{what.capitalize()} may be at most {limit:,} bytes; nothing was "
                            "stored.",
                            limit=limit,
                            headers={"Connection": "close"},
                        )
                    )
                finished = not message.get("more_body", False)
            else:
                finished = True
            return message

        return limited

    @staticmethod
    async def _read_all(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _check_json(body: bytes, path: str) -> ProblemError | None:
        if not _SUSPECT_ESCAPE.search(body):
            return None
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return None  # malformed or absurdly nested JSON: the endpoint's parsing refuses it
        found = find_unstorable(parsed)
        if found is None:
            return None
        pointer, reason = found
        return invalid("body", pointer, reason, f"body {pointer}: {reason}")
