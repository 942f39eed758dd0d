"""The one way to enqueue background work: an arq pool behind a small façade.

Redis is a queue, never the only copy of anything: callers record durable intent in Postgres
first (outbox rows) and enqueue after commit. So an enqueue failure (Redis down) is logged and
reported as ``False``, never raised into the request that caused it; the sweeper catches up.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job

log = logging.getLogger(__name__)

QUEUE_NAME = "cerdas:queue"


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    # Fail fast: a request must not wait seconds for a queue that is down.
    settings.conn_timeout = 1
    settings.conn_retries = 0
    return settings


class Queue:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    @classmethod
    async def connect(cls, url: str) -> Queue:
        return cls(await create_pool(redis_settings(url), default_queue_name=QUEUE_NAME))

    async def enqueue(
        self, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
    ) -> Job | None:
        """Enqueue ``function``; ``None`` when Redis refused it or a job with ``job_id`` waits."""
        try:
            return await self.redis.enqueue_job(function, *args, _job_id=job_id, **kwargs)
        except Exception:
            log.warning(
                "could not enqueue %s (job %s); it will be swept", function, job_id, exc_info=True
            )
            return None

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.redis.aclose()
