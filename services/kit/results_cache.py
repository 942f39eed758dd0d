"""A cache of rendered reads (rankings, summaries, dashboards), invalidated by recomputes.

``results_version`` is a Postgres sequence bumped *after* every commit that changes what these
reads show (a recompute, a workflow transition). A read asks for the current version (one cheap
query) and serves its cached bytes if they were built at that version. Because the bump follows
the commit, a response built after reading version v holds data at least as new as v: the cache
can serve something too new for its version, never too old. Every process keeps its own cache;
all of them agree through the shared version.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from fastapi import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.kit.db import driver_of
from services.kit.http import etag_of, render_json

_READ_SQL = "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM results_version"
_BUMP = text("SELECT nextval('results_version')")


async def bump(engine: AsyncEngine | AsyncConnection) -> None:
    """Call after the change has committed."""
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as connection:
            await connection.execute(_BUMP)
            await connection.commit()
    else:
        await engine.execute(_BUMP)


class ResultsCache:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[int, bytes, str]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def respond(
        self,
        engine: AsyncEngine,
        key: Hashable,
        build: Callable[[], Awaitable[Any]],
    ) -> Response:
        """The cached answer for ``key`` at the current version, else ``build()``'s.

        A hit costs one round trip and opens no transaction; checks that may fail (unknown
        region, visibility) belong in ``build``, whose errors are not cached.
        """
        async with engine.connect() as connection:
            # Straight to the driver, outside any transaction: a third less time per hit than
            # an AUTOCOMMIT execution through SQLAlchemy (measured 270 µs against 400 µs).
            driver = await driver_of(connection)
            version = int(await driver.fetchval(_READ_SQL) or 0)
        entry = self.entries.get(key)
        if entry is not None and entry[0] == version:
            self.hits += 1
            self.entries.move_to_end(key)
            _, body, etag = entry
        else:
            self.misses += 1
            payload = await build()
            body = render_json(payload)
            etag = etag_of(body)
            self.entries[key] = (version, body, etag)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return Response(body, media_type="application/json", headers={"ETag": etag})
