"""The scoring worker: arq settings shared by ``cerdas worker`` and the in-process worker.

The jobs are in services/scoring/tasks.py. An arq worker stops when its Redis connection drops; the
:class:`SupervisedWorker` around it logs that, reconnects with backoff and tells readiness checks
what state it is in, so a Redis outage delays recomputes and never ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
from arq import cron, func
from arq.worker import Worker

from services.domain.recompute.jobs import RECOMPUTE_JOB, RUN_JOB
from services.domain.webhook.jobs import DELIVER_JOB
from services.kit.queue import QUEUE_NAME, connect_lazily
from services.kit.runtime import Runtime
from services.scoring.tasks import (
    deliver_webhook,
    ping,
    recompute_assessment,
    run_recompute,
    sweep_outbox,
)

log = logging.getLogger(__name__)

# How often arq records the worker's health (each poll, at most this often); the supervisor
# checks as often whether the loop still polls.
HEALTH_SECONDS = 5


def build_worker(runtime: Runtime, *, handle_signals: bool, on_ready: Any = None) -> Worker:
    """A worker bound to ``runtime``'s database and Redis; ``on_ready()`` is called once it
    has connected to Redis and is about to poll."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["runtime"] = runtime
        # The webhook client. trust_env=False: no HTTP(S)_PROXY, .netrc or SSL_CERT_* from the
        # environment (a delivery connects to the address it checked, which a proxy would not,
        # and through a proxy's tunnel the pinned address became the TLS name). No keep-alive:
        # a TLS connection opened for one name pinned to an address must not serve another
        # name pinned to the same address (the delivery also sends Connection: close).
        ctx["http"] = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
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
            func(deliver_webhook, name=DELIVER_JOB, timeout=timeout, max_tries=3),
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
        # Our own client, with a read timeout: over a link that silently drops packets, arq's
        # poll fails in seconds (and the supervisor reconnects) instead of waiting forever.
        redis_pool=connect_lazily(runtime.settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        max_jobs=10,
        health_check_interval=HEALTH_SECONDS,
        keep_result=300,
        poll_delay=0.05,
        retry_jobs=True,
    )


class SupervisedWorker:
    """An arq worker that is restarted whenever it stops or stalls, with backoff.

    ``state`` is what readiness checks report: ``starting``, ``running`` or ``reconnecting``
    (with the reason); ``stopped`` once cancelled. arq's main loop runs in a task of its own
    that the supervisor watches without awaiting it directly: a loop that stops polling (its
    health record goes stale) is restarted, and stopping never waits more than a few seconds
    for a loop that does not honour its cancellation.
    """

    def __init__(
        self, runtime: Runtime, *, max_backoff: float = 5.0, stall_seconds: float = 30.0
    ) -> None:
        self.runtime = runtime
        self.max_backoff = max_backoff
        self.stall_seconds = stall_seconds
        self.state = "starting"
        self.restarts = 0

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
            worker = build_worker(self.runtime, handle_signals=False, on_ready=self._ready)
            started = time.monotonic()
            loop = asyncio.create_task(worker.async_run(), name="arq-worker-loop")
            try:
                reason = await self._watch(worker, loop)
            except asyncio.CancelledError:
                await _settle(loop, cancel=True)
                await self._close(worker)
                self.state = "stopped"
                raise
            await self._close(worker)
            if time.monotonic() - started > 30:
                backoff = 0.25  # it had been running: this is a new outage
            self.restarts += 1
            self.state = f"reconnecting ({reason})"
            log.warning("scoring worker stopped (%s); reconnecting in %.2f s", reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _watch(self, worker: Worker, loop: asyncio.Task[None]) -> str:
        """Wait for arq's loop to end or stall; returns why it is being restarted."""
        while True:
            done, _ = await asyncio.wait({loop}, timeout=HEALTH_SECONDS)
            if done:
                if loop.cancelled():
                    # Cancelled from inside (jobs cancelled as Redis broke under load).
                    return "the worker loop was cancelled (Redis connection lost)"
                error = loop.exception()
                if error is None:
                    return "the worker loop ended"
                return f"{type(error).__name__}: {error}".strip()
            # arq records its health on every poll, at most once per HEALTH_SECONDS.
            last = float(getattr(worker, "_last_health_check", 0) or 0)
            if self.running and last and time.time() - last > self.stall_seconds:
                await _settle(loop, cancel=True)
                return f"the worker loop stalled (no poll for {time.time() - last:.0f} s)"

    @staticmethod
    async def _close(worker: Worker) -> None:
        """Close what can be closed, in bounded time; with Redis gone, parts of arq's close
        fail, and its close raises the CancelledError of the jobs it cancels (they are
        retried): neither is a reason to stop the supervisor."""
        closing = asyncio.create_task(worker.close(), name="arq-worker-close")
        await _settle(closing, cancel=False)
        if closing.done() and not closing.cancelled() and closing.exception() is not None:
            log.debug("closing the arq worker failed", exc_info=closing.exception())
        http = worker.ctx.get("http")
        if isinstance(http, httpx.AsyncClient) and not http.is_closed:
            await http.aclose()
        pool = worker._pool
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.aclose(close_connection_pool=True)


async def _settle(task: asyncio.Task[None], *, cancel: bool, seconds: float = 5.0) -> None:
    """Wait (cancelling it first if asked) at most ``seconds`` for ``task`` to finish; a task
    that ignores its cancellation is left behind with a warning rather than waited on."""
    if cancel:
        task.cancel()
    done, _ = await asyncio.shield(asyncio.wait({task}, timeout=seconds))
    if not done:
        log.warning("%s did not finish within %.0f s; left behind", task.get_name(), seconds)
    elif not task.cancelled():
        task.exception()  # retrieved: not "never retrieved" noise in the log
