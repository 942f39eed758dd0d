"""A process's cache of values read from Postgres, emptied by a ``NOTIFY`` on one channel.

For rows that change rarely but are read on every request (an API key's principal): a trigger
on the table notifies ``channel`` in the transaction of every change, and Postgres delivers the
notification after that commit to every listening connection, in every replica. Each process
holds one connection of its own that ``LISTEN``\\s, and empties its cache on every notification.

The cache is trusted only while that connection is listening:

- a value is kept under the *generation* current when its read began; every notification (and
  :meth:`NotifiedCache.forget_all`) starts a new generation, so a read that raced a change is
  never kept, and a value of an older generation is never served;
- on (re)connecting, the listener runs ``LISTEN`` and then starts a new generation, before it
  is trusted: whatever was read while nobody listened is dropped;
- while it is not trusted (starting, reconnecting after a lost connection or a Postgres
  restart) nothing is served or kept: every caller reads the database, as without a cache;
- every ``check_seconds`` the listener asks its connection ``SELECT 1``: a connection that died
  without a word (a dropped network path) is noticed by that query failing, which bounds how
  long a change can go unheard in that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.db import own_connection

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class NotifiedCache(Generic[K, V]):
    def __init__(
        self,
        engine: AsyncEngine,
        channel: str,
        *,
        size: int = 4096,
        check_seconds: float = 5.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.size = size
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self.entries: OrderedDict[K, tuple[int, V]] = OrderedDict()  # key → (generation, value)
        self.hits = 0
        self.misses = 0
        self.connects = 0  # times the listener was (re)connected and trusted
        self.server_pid: int | None = None  # the listening backend's, for tests
        self._generation = 0
        self._trusted = False
        self._listener: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._trusted

    @property
    def generation(self) -> int | None:
        """Take this before reading the database and hand it to :meth:`put`; None while the
        cache is not trusted."""
        return self._generation if self._trusted else None

    def get(self, key: K) -> V | None:
        """The value kept for ``key`` in the current generation, else None (read it)."""
        entry = self.entries.get(key) if self._trusted else None
        if entry is None or entry[0] != self._generation:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V, generation: int | None) -> None:
        """Keep ``value``, read after :attr:`generation` was ``generation``, if nothing has
        changed since (no notification, no reconnection)."""
        if generation is None or generation != self._generation or not self._trusted:
            return
        self.entries[key] = (generation, value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def forget_all(self) -> None:
        """A change was heard (or made here): nothing kept so far is served again."""
        self._generation += 1
        self.entries.clear()

    # -- the listener ---------------------------------------------------------------------

    def start(self) -> None:
        """Listen for changes in the background (until :meth:`close`)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name=f"{self.channel}-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._trusted = False
        self.forget_all()

    async def connect(self) -> asyncpg.Connection:
        """A connection of its own (never one of the pool's), with the engine's settings."""
        return await own_connection(self.engine, f"cerdas {self.channel} listener")

    async def _listen(self) -> None:
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await self.connect()
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(  # LISTEN is active on return
                    self.channel, lambda *_: self.forget_all()
                )
                # Nothing read while nobody listened is trusted; no await until trusted, so no
                # notification can fall between the two.
                self.forget_all()
                self.server_pid = connection.get_server_pid()
                self._trusted = True
                self.connects += 1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.check_seconds)
                    if not lost.is_set():  # still alive?
                        await connection.fetchval("SELECT 1", timeout=self.check_seconds)
                log.warning("%s cache: the LISTEN connection was lost; reconnecting", self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s cache: not listening (%s: %s)", self.channel, type(exc).__name__, exc
                )
            finally:
                self._trusted = False
                self.forget_all()
                if connection is not None and not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(self.retry_seconds)
