"""Request ids: taken from X-Request-ID when a caller sends one, else made; echoed back.

The id of the request being served is also in a context variable (:func:`current_request_id`),
so that log lines written while serving it carry it (services/kit/logs.py).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_REQUEST_ID: ContextVar[str | None] = ContextVar("cerdas_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context, or None (worker, startup)."""
    return _REQUEST_ID.get()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _SAFE.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(
                    (b"x-request-id", request_id.encode("latin-1"))
                )
            await send(message)

        token = _REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)
