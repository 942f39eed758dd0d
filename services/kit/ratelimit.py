"""Per-caller rate limits, counted in Redis so every replica shares them.

A fixed one-minute window per caller (an API key, or the client address for anonymous reads):
one pipelined INCR + EXPIRE per request. A limit that cannot be checked because Redis is down
fails open (the request goes on) and is logged once per outage by the queue's breaker: Redis
being away must not take the API with it.
"""

from __future__ import annotations

import time

from services.kit.errors import ProblemError
from services.kit.queue import Queue

WINDOW_SECONDS = 60


class RateLimited(ProblemError):
    status = 429
    code = "rate-limited"
    title = "Too many requests"


async def check(queue: Queue, caller: str, limit: int) -> None:
    """Count one request for ``caller``; raise 429 past ``limit`` a minute (0: no limit)."""
    if limit <= 0 or not queue.available:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"cerdas:rate:{caller}:{window}"
    try:
        async with queue.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS + 1)
            count, _ = await pipe.execute()
    except Exception:
        queue.failed("rate limit check")
        return
    queue.succeeded()
    if int(count) > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
        raise RateLimited(
            f"More than {limit} requests in a minute from this caller; retry after "
            f"{retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            limit=limit,
            retry_after=retry_after,
        )
