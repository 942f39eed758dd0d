"""The rate limit's count: concurrent requests of one caller are counted together, exactly."""

from __future__ import annotations

import asyncio

import pytest

from services.kit import ratelimit
from services.kit.queue import Queue
from tests.conftest import fresh_rate_window


async def test_concurrent_requests_of_one_caller_are_each_counted_once(queue: Queue) -> None:
    retry_afters: list[int] = []

    async def one() -> int:
        try:
            await ratelimit.check(queue, "anon:192.0.2.7", 6)
        except ratelimit.RateLimited as exc:
            retry_afters.append(int(exc.headers["Retry-After"]))
            return 429
        return 200

    await fresh_rate_window()
    statuses = await asyncio.gather(*(one() for _ in range(10)))
    assert sorted(statuses) == [200] * 6 + [429] * 4
    assert all(1 <= seconds <= 61 for seconds in retry_afters)
    keys = await queue.redis.keys("cerdas:rate:anon:192.0.2.7:*")
    assert len(keys) == 1
    assert int(await queue.redis.get(keys[0])) == 10
    assert 0 < await queue.redis.ttl(keys[0]) <= ratelimit.WINDOW_SECONDS + 1
    # Later, one at a time: still refused, and counted.
    with pytest.raises(ratelimit.RateLimited):
        await ratelimit.check(queue, "anon:192.0.2.7", 6)
    assert int(await queue.redis.get(keys[0])) == 11
    # Another caller has a count of its own.
    await ratelimit.check(queue, "anon:192.0.2.8", 6)


async def test_a_limit_fails_open_while_redis_is_down(queue: Queue) -> None:
    async def refused(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("down")

    counter = ratelimit._counter(queue)
    original = counter.script
    counter.script = refused
    try:
        await asyncio.gather(*(ratelimit.check(queue, "anon:192.0.2.9", 1) for _ in range(3)))
        assert not queue.available
    finally:
        counter.script = original
        queue.succeeded()
    assert not counter.pending
