"""The scoring worker: arq settings shared by ``cerdas worker`` and the in-process worker."""

from __future__ import annotations

from typing import Any

from arq.worker import Worker

from services.kit.queue import QUEUE_NAME, redis_settings
from services.kit.runtime import Runtime


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op round trip: proves a worker consumes the queue (readiness, benchmarks)."""
    return "pong"


FUNCTIONS: list[Any] = [ping]


def build_worker(runtime: Runtime, *, handle_signals: bool) -> Worker:
    """A worker bound to ``runtime``'s database and Redis."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = runtime

    assert runtime.settings.redis_url
    return Worker(
        functions=FUNCTIONS,
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(runtime.settings.redis_url),
        on_startup=on_startup,
        handle_signals=handle_signals,
        max_jobs=10,
        job_timeout=600,
        keep_result=60,
        poll_delay=0.05,
    )
