"""The read baseline: a bare ASGI app returning fixed bytes, served like Cerdas (uvicorn).

``BENCH_BODY_FILE`` is the body of every path; ``BENCH_BODIES`` (optional), a JSON object of
path (with its query string) → body file, gives some paths bodies of their own.
"""

from __future__ import annotations

import json
import os
from typing import Any

BODY = open(os.environ["BENCH_BODY_FILE"], "rb").read()  # noqa: SIM115 - read once at import
BODIES = {
    path.encode(): open(file, "rb").read()  # noqa: SIM115 - read once at import
    for path, file in json.loads(os.environ.get("BENCH_BODIES", "{}")).items()
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    query = scope["query_string"]
    target = scope["path"].encode() + (b"?" + query if query else b"")
    body = BODIES.get(target, BODY)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
