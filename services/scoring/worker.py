"""The scoring worker: arq settings shared by ``cerdas worker`` and the in-process worker.

Jobs may run more than once (a worker dies, the sweeper re-enqueues); each one re-reads fresh
state by id and is idempotent. An arq worker stops when its Redis connection drops; the
:class:`SupervisedWorker` around it logs that, reconnects with backoff and tells readiness checks
what state it is in, so a Redis outage delays recomputes and never ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from arq import cron, func
from arq.worker import Worker

from services.kit import webhooks
from services.kit.outbox import RECOMPUTE_JOB, RUN_JOB
from services.kit.queue import QUEUE_NAME, redis_settings
from services.kit.runtime import Runtime
from services.scoring import service

log = logging.getLogger(__name__)


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op round trip: proves a worker consumes the queue (readiness, benchmarks)."""
    return "pong"


async def recompute_assessment(ctx: dict[str, Any], assessment_id: str) -> str:
    runtime: Runtime = ctx["runtime"]
    outcome = await service.recompute(runtime.sessionmaker, uuid.UUID(assessment_id), runtime.queue)
    return outcome.outcome


async def run_recompute(ctx: dict[str, Any], run_id: str) -> str:
    """One batch of a recompute run, then the next step is enqueued (short, retryable jobs)."""
    runtime: Runtime = ctx["runtime"]
    recompute_run = await service.run_step(runtime.sessionmaker, uuid.UUID(run_id), runtime.queue)
    if recompute_run is None:
        return "finished"
    await runtime.queue.enqueue(RUN_JOB, run_id, job_id=service.run_job_id(recompute_run))
    return f"{recompute_run.done + recompute_run.failed} of {recompute_run.total}"


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    runtime: Runtime = ctx["runtime"]
    settings = runtime.settings
    return await service.sweep(
        runtime.sessionmaker,
        runtime.queue,
        older_than=timedelta(seconds=settings.sweep_seconds),
        job_timeout=timedelta(seconds=settings.job_timeout_seconds),
    )


async def deliver_webhook(ctx: dict[str, Any], delivery_id: int) -> str:
    runtime: Runtime = ctx["runtime"]
    return await webhooks.deliver(
        runtime.sessionmaker,
        delivery_id,
        runtime.queue,
        client=ctx["http"],
        backoff_seconds=runtime.settings.webhook_backoff_seconds,
    )


def build_worker(runtime: Runtime, *, handle_signals: bool, on_ready: Any = None) -> Worker:
    """A worker bound to ``runtime``'s database and Redis; ``on_ready()`` is called once it
    has connected to Redis and is about to poll."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = runtime
        ctx["http"] = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        if on_ready is not None:
            on_ready()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await ctx["http"].aclose()

    assert runtime.settings.redis_url
    every = runtime.settings.sweep_seconds
    timeout = runtime.settings.job_timeout_seconds
    return Worker(
        functions=[
            func(ping, name="ping"),
            func(recompute_assessment, name=RECOMPUTE_JOB, timeout=timeout, max_tries=5),
            func(run_recompute, name=RUN_JOB, timeout=timeout, max_tries=5),
            func(deliver_webhook, name=webhooks.DELIVER_JOB, timeout=timeout, max_tries=3),
        ],
        cron_jobs=[
            cron(
                sweep_outbox,
                second=set(range(0, 60, every)),
                unique=True,
                run_at_startup=True,
                timeout=timeout,
            ),
        ],
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(runtime.settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        max_jobs=10,
        keep_result=300,
        poll_delay=0.05,
        retry_jobs=True,
    )


class SupervisedWorker:
    """An arq worker that is restarted whenever it stops, with backoff.

    ``state`` is what readiness checks report: ``starting``, ``running`` or ``reconnecting``
    (with the reason); ``stopped`` only after :meth:`stop`.
    """

    def __init__(self, runtime: Runtime, *, max_backoff: float = 5.0) -> None:
        self.runtime = runtime
        self.max_backoff = max_backoff
        self.state = "starting"
        self.restarts = 0
        self._worker: Worker | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def _ready(self) -> None:
        if self.restarts:
            log.info("scoring worker connected again (restart %d)", self.restarts)
        self.state = "running"

    async def run(self) -> None:
        """Run until cancelled; never returns otherwise."""
        backoff = 0.25
        while True:
            worker = self._worker = build_worker(
                self.runtime, handle_signals=False, on_ready=self._ready
            )
            started = time.monotonic()
            try:
                await worker.async_run()
                reason = "the worker loop ended"
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    await self._close(worker)  # we are being stopped
                    self.state = "stopped"
                    raise
                # A cancellation we did not ask for: arq's main task cancelled from inside
                # when its Redis connection broke under load. Not a stop: reconnect.
                reason = "the worker's main task was cancelled (Redis connection lost)"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}".strip()
            await self._close(worker)
            if time.monotonic() - started > 30:
                backoff = 0.25  # it had been running: this is a new outage
            self.restarts += 1
            self.state = f"reconnecting ({reason})"
            log.warning("scoring worker stopped (%s); reconnecting in %.2f s", reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    @staticmethod
    async def _close(worker: Worker) -> None:
        """Close what can be closed; with Redis gone, parts of arq's close fail.

        arq's close cancels the jobs still running and then gathers them, which raises their
        CancelledError here: that one is expected (the jobs are retried), unless this task is
        itself being stopped, and then it is raised once everything is closed.
        """
        stopping: asyncio.CancelledError | None = None
        try:
            await worker.close()
        except asyncio.CancelledError as cancelled:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                stopping = cancelled
        except Exception:
            log.debug("closing the arq worker failed", exc_info=True)
        http = worker.ctx.get("http")
        if isinstance(http, httpx.AsyncClient) and not http.is_closed:
            await http.aclose()
        pool = worker._pool
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.aclose(close_connection_pool=True)
        if stopping is not None:
            raise stopping
