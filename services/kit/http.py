"""Conditional GET for polling dashboards: every JSON read carries an ETag and honours
If-None-Match, by one middleware, so no endpoint can forget it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Results change whenever a recompute lands: clients may keep a copy but must revalidate.
CACHE_CONTROL = "no-cache"


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def if_none_match(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


def render_json(payload: Any) -> bytes:
    """``payload`` as compact UTF-8 JSON: a response model by pydantic's own encoder (fields in
    their declared order), anything else through FastAPI's encoder."""
    if isinstance(payload, BaseModel):
        return payload.model_dump_json().encode()
    return json.dumps(jsonable_encoder(payload), ensure_ascii=False, separators=(",", ":")).encode()


def json_response(payload: Any, *, status_code: int = 200) -> Response:
    return Response(render_json(payload), status_code=status_code, media_type="application/json")


class ConditionalGetMiddleware:
    """ETag (a hash of the body) on every successful JSON GET; 304 when the client has it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def buffered_send(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                is_json = headers.get("content-type", "").startswith("application/json")
                if message["status"] != 200 or not is_json:
                    passthrough = True  # errors, files and streamed exports go out untouched
                    await send(message)
                else:
                    start = message
                return
            if passthrough:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            assert start is not None
            body = b"".join(chunks)
            headers = MutableHeaders(raw=start["headers"])
            etag = headers.get("etag") or etag_of(body)
            headers["etag"] = etag
            headers.setdefault("cache-control", CACHE_CONTROL)
            if if_none_match(request_headers.get("if-none-match"), etag):
                del headers["content-length"]
                del headers["content-type"]
                await send({**start, "status": 304})
                await send({"type": "http.response.body", "body": b""})
                return
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered_send)
