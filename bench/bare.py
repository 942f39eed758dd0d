"""The read baseline: a bare ASGI app returning fixed bytes, served like Cerdas (uvicorn)."""

from __future__ import annotations

import os
from typing import Any

BODY = open(os.environ["BENCH_BODY_FILE"], "rb").read()  # noqa: SIM115 - read once at import


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
