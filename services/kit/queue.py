"""The one way to enqueue background work: an arq pool behind a small façade.

Redis is a queue, never the only copy of anything: callers record durable intent in Postgres
first (outbox rows) and enqueue after commit. So an enqueue failure (Redis down) is logged and
reported as ``False``, never raised into the request that caused it; the sweeper catches up.

The façade connects lazily, so a process starts while Redis is down, and after a failure it stops
trying for a short while (a circuit breaker): while Redis is away, a write does not wait for a
connection timeout on every enqueue, and the log gets one line per outage, not one per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

log = logging.getLogger(__name__)

QUEUE_NAME = "cerdas:queue"
# After a failure, calls are skipped for this long before Redis is tried again.
BREAKER_SECONDS = 2.0


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # Fail fast: a request must not wait seconds for a queue that is down.
    settings.conn_timeout = 1
    settings.conn_retries = 0
    return settings


def connect_lazily(url: str) -> ArqRedis:
    """An arq client for ``url`` that opens its connections on first use (no ping here)."""
    settings = redis_settings(url)
    redis = ArqRedis(
        host=settings.host,
        port=settings.port,
        unix_socket_path=settings.unix_socket_path,
        db=settings.database,
        username=settings.username,
        password=settings.password,
        ssl=settings.ssl,
        socket_connect_timeout=settings.conn_timeout,
        # A Redis that accepts the connection and then hangs must not hang a request either.
        socket_timeout=2,
        encoding="utf8",
    )
    redis.default_queue_name = QUEUE_NAME
    return redis


class Queue:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._down_until = 0.0
        self._down_since: float | None = None

    @classmethod
    def connect(cls, url: str) -> Queue:
        """A queue for ``url``; nothing is contacted until the first call."""
        return cls(connect_lazily(url))

    @property
    def available(self) -> bool:
        """False while the breaker is open (Redis failed within the last few seconds)."""
        return time.monotonic() >= self._down_until

    def failed(self, what: str) -> None:
        """Record a failed call: open the breaker, log once per outage."""
        now = time.monotonic()
        self._down_until = now + BREAKER_SECONDS
        if self._down_since is None:
            self._down_since = now
            log.warning("Redis unreachable (%s); writes go on, queued work waits for it", what)

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.info("Redis reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        self._down_until = 0.0

    async def enqueue(
        self, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
    ) -> Job | None:
        """Enqueue ``function``; ``None`` when Redis refused it or a job with ``job_id`` waits."""
        if not self.available:
            return None
        try:
            job = await self.redis.enqueue_job(function, *args, _job_id=job_id, **kwargs)
        except Exception:
            self.failed(f"enqueue {function}")
            return None
        self.succeeded()
        return job

    async def ping(self) -> bool:
        try:
            ok = bool(await self.redis.ping())
        except Exception:
            self.failed("ping")
            return False
        self.succeeded()
        return ok

    async def depth(self) -> tuple[int, int]:
        """Jobs in the queue: (due now, deferred to later). Raises when Redis does not answer
        (callers report that); skipped at once while the breaker is open."""
        if not self.available:
            raise ConnectionError("Redis unreachable (breaker open)")
        now_ms = int(time.time() * 1000)  # arq scores a job by when it is due, in ms
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(QUEUE_NAME)
                pipe.zcount(QUEUE_NAME, "-inf", now_ms)
                total, due = await pipe.execute()
        except Exception:
            self.failed("queue depth")
            raise
        self.succeeded()
        return int(due), int(total) - int(due)

    async def close(self) -> None:
        await self.redis.aclose()
