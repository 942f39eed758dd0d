"""Per-caller rate limits, counted in Redis so every replica shares them.

A fixed one-minute window per caller (an API key, or the client address for anonymous reads):
Redis holds each caller's count for the window, and every request is counted there before it
is answered, so a limit holds across replicas exactly. One script call (INCRBY, and EXPIRE
when it created the key) per round trip.

Requests of the same caller that ask in the same turn of the event loop (a dashboard's parallel
reads, many clients behind one address, a busy server) are counted together at the end of that
turn: one ``INCRBY n`` for the n of them, each taking its own place (the new count minus n plus
one, and so on), exactly as n single increments would have. Nothing is reserved ahead of need,
so no request is let through past the limit and none is refused short of it, and no request
waits for another's round trip: a lone one goes out at the end of its turn.

A limit that cannot be checked because Redis is down fails open (the request goes on) and is
logged once per outage by the queue's breaker: Redis being away must not take the API with it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from services.kit.errors import ProblemError
from services.kit.queue import Queue

WINDOW_SECONDS = 60

# KEYS[1]: the caller's window key; ARGV: requests to count, the key's lifetime (s).
_COUNT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return count
"""


class RateLimited(ProblemError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"


class _Counter:
    """One queue's counting: the requests of a caller that ask in the same turn of the event
    loop are counted by one round trip, sent at the end of that turn."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.script: Any = queue.redis.register_script(_COUNT)
        # key → the futures of the requests of this turn (their places, in order)
        self.pending: dict[str, list[asyncio.Future[int | None]]] = {}

    async def _incr(self, key: str, n: int) -> int | None:
        """The count after adding ``n``; None when Redis failed (fail open)."""
        try:
            count = int(await self.script(keys=[key], args=[n, WINDOW_SECONDS + 1]))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.queue.failed("rate limit check")
            return None
        self.queue.succeeded()
        return count

    async def place(self, key: str) -> int | None:
        """This request's place in its window's count (1 for the first), or None."""
        loop = asyncio.get_running_loop()
        waiters = self.pending.get(key)
        if waiters is None:
            waiters = self.pending[key] = []
            loop.call_soon(self._send, key)
        waiter: asyncio.Future[int | None] = loop.create_future()
        waiters.append(waiter)
        return await waiter

    def _send(self, key: str) -> None:
        task = asyncio.get_running_loop().create_task(self._batch(key, self.pending.pop(key, [])))
        _batches.add(task)
        task.add_done_callback(_batches.discard)

    async def _batch(self, key: str, waiters: list[asyncio.Future[int | None]]) -> None:
        waiters = [w for w in waiters if not w.done()]
        try:
            if not waiters:
                return
            count = await self._incr(key, len(waiters))
            first = None if count is None else count - len(waiters) + 1
            for offset, waiter in enumerate(waiters):
                if not waiter.done():
                    waiter.set_result(None if first is None else first + offset)
        finally:
            for waiter in waiters:  # the batch was cancelled (shutdown): fail open, never hang
                if not waiter.done():
                    waiter.set_result(None)


# Batches in flight (a task must be referenced until it ends).
_batches: set[asyncio.Task[None]] = set()
_counters: weakref.WeakKeyDictionary[Queue, _Counter] = weakref.WeakKeyDictionary()


def _counter(queue: Queue) -> _Counter:
    counter = _counters.get(queue)
    if counter is None or counter.queue.redis is not queue.redis:
        counter = _counters[queue] = _Counter(queue)
    return counter


async def check(queue: Queue, caller: str, limit: int) -> None:
    """Count one request for ``caller``; raise 429 past ``limit`` a minute (0: no limit)."""
    if limit <= 0 or not queue.available:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    count = await _counter(queue).place(f"cerdas:rate:{caller}:{window}")
    if count is not None and count > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
        raise RateLimited(
            f"More than {limit} requests in a minute from this caller; retry after "
            f"{retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            limit=limit,
            retry_after=retry_after,
        )
