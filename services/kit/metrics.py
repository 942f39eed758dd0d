"""Prometheus metrics: the catalogue, the HTTP middleware, and ``GET /metrics``.

Every metric Cerdas exports is defined here (docs/architecture.md lists them); the service
layers count on these objects (the worker's recomputes, webhook deliveries, evidence stored),
so kit knows no domain code. Three kinds:

- **counted in the process**: HTTP requests and their latency (:class:`MetricsMiddleware`,
  labelled by route template, never the raw path), recompute jobs, webhook deliveries,
  evidence bytes stored;
- **read at scrape time**: the outbox backlog (a count and a ``min()`` over an indexed column,
  through a reader the composition root hands in) and the queue depth (two O(log n) Redis
  calls). Read when Prometheus asks rather than sampled by the worker: the figures must stay
  true when the worker is down, which is exactly when the backlog grows. Each read is bounded
  in time; a source that is down is reported by ``cerdas_metrics_source_up`` and its figures
  are left out, and ``/metrics`` still answers 200;
- **several processes** (uvicorn or gunicorn workers, or a serve and a worker sharing a pod):
  with ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts, prometheus_client keeps the
  counters in files there and ``/metrics`` reports the sum over every process that wrote
  them (its :class:`MultiProcessCollector`); the folder must be empty when the first process
  starts (README, Settings).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.runtime import Runtime

log = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Longest a scrape waits for Postgres or Redis before leaving their figures out.
SCRAPE_READ_SECONDS = 2.0

# Latency buckets (seconds): reads answer in milliseconds, exports and CSV imports in seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A recompute job is one assessment (milliseconds) or a batch of a run (seconds).
_JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "cerdas_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "cerdas_http_request_duration_seconds",
    "Time from a request's arrival until its answer is sent, by method and route template",
    ["method", "route"],
    buckets=_HTTP_BUCKETS,
)
RECOMPUTE_JOBS = Counter(
    "cerdas_recompute_jobs_total",
    "Recompute jobs run by the scoring worker, by job (assessment: one assessment; run_step: "
    "a batch of a recompute run) and outcome (computed, current, gone, unknown-framework; "
    "continued, finished; error: raised or timed out)",
    ["job", "outcome"],
)
RECOMPUTE_DURATION = Histogram(
    "cerdas_recompute_job_duration_seconds",
    "Duration of the scoring worker's recompute jobs, by job",
    ["job"],
    buckets=_JOB_BUCKETS,
)
RECOMPUTED_ASSESSMENTS = Counter(
    "cerdas_recomputed_assessments_total",
    "Assessments brought up to date by any recompute (a job, a sweeper batch, a run's step), "
    "by outcome",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "cerdas_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (succeeded, pending: failed and retried later, "
    "failed: given up, cancelled, skipped, superseded, error)",
    ["outcome"],
)
RESULTS_CACHE_READS = Counter(
    "cerdas_results_cache_reads_total",
    "Cached reads (rankings, summaries, dashboards), by outcome: hit, early_hit (a hit answered "
    "before routing), miss (built), and separately sequence (the version asked of the database "
    "because the listener was not trusted)",
    ["outcome"],
)
EVIDENCE_STORED_BYTES = Counter(
    "cerdas_evidence_stored_bytes_total",
    "Bytes of new evidence objects committed to the store (de-duplicated uploads add nothing)",
)
EVIDENCE_STORED_OBJECTS = Counter(
    "cerdas_evidence_stored_objects_total",
    "New evidence objects committed to the store",
)


class JobOutcome:
    """What a timed job sets as its outcome (``error`` if it raises before setting one)."""

    value = "error"


@contextlib.contextmanager
def recompute_job(job: str) -> Iterator[JobOutcome]:
    """Count and time one recompute job: ``with recompute_job("assessment") as outcome:``,
    then ``outcome.value = ...``. A job that raises (or is cancelled) counts as ``error``."""
    outcome = JobOutcome()
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome.value = "error"
        raise
    finally:
        RECOMPUTE_JOBS.labels(job, outcome.value).inc()
        RECOMPUTE_DURATION.labels(job).observe(time.perf_counter() - started)


# (number of assessments waiting for a recompute, age in seconds of the oldest one or None)
OutboxReader = Callable[[AsyncSession], Awaitable[tuple[int, float | None]]]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def route_label(scope: Scope) -> str:
    """The template of the route that served ``scope`` (``/v1/regions/{code}``); for a request
    answered before routing (the edge refused it), the template it would have matched; else
    ``unmatched``. Never the raw path: ids in labels would make a series per id."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(dict(scope))
        if match is not Match.NONE and isinstance(getattr(candidate, "path", None), str):
            return str(candidate.path)
    return "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and times it. No I/O:
    two in-memory (or, in multiprocess mode, memory-mapped) updates per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except asyncio.CancelledError:
            status = 499  # the client went away before the answer (nginx's convention)
            raise
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = route_label(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


class _Families:
    """A collector of metric families read once, at scrape time."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


async def _bounded(read: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(read, timeout=SCRAPE_READ_SECONDS)


async def scrape_time_families(runtime: Runtime, outbox: OutboxReader | None) -> list[Metric]:
    """The gauges read when Prometheus asks: the outbox backlog and the queue depth, and
    whether each source answered. Never raises."""
    up = GaugeMetricFamily(
        "cerdas_metrics_source_up",
        "Whether a source of scrape-time figures answered this scrape (database, redis)",
        labels=["source"],
    )
    families: list[Metric] = [up]

    async def read_outbox() -> tuple[int, float | None]:
        assert outbox is not None
        async with runtime.sessionmaker() as session:
            return await outbox(session)

    if outbox is not None:
        try:
            waiting, oldest = await _bounded(read_outbox())
        except Exception as exc:
            log.debug("metrics: outbox backlog unavailable: %s", type(exc).__name__)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            families.append(
                GaugeMetricFamily(
                    "cerdas_outbox_waiting",
                    "Assessments waiting for a recompute (recompute_request rows)",
                    value=waiting,
                )
            )
            families.append(
                GaugeMetricFamily(
                    "cerdas_outbox_oldest_age_seconds",
                    "How long the longest-waiting recompute request has waited (0 when none)",
                    value=oldest or 0.0,
                )
            )
    try:
        due, deferred = await _bounded(runtime.queue.depth())
    except Exception as exc:
        log.debug("metrics: queue depth unavailable: %s", type(exc).__name__)
        up.add_metric(["redis"], 0)
    else:
        up.add_metric(["redis"], 1)
        jobs = GaugeMetricFamily(
            "cerdas_queue_jobs",
            "Jobs in the arq queue: due (waiting for a worker) or deferred (retries, later steps)",
            labels=["state"],
        )
        jobs.add_metric(["due"], due)
        jobs.add_metric(["deferred"], deferred)
        families.append(jobs)
    return families


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The text exposition of this process's metrics (or, in multiprocess mode, of every
    process's), followed by ``extra``."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)
    registry.register(_Families(extra))
    return generate_latest(registry)


class _Exposition:
    """``exposition()`` as a collector, so a plain HTTP server can serve it."""

    def collect(self) -> Iterable[Metric]:
        registry = CollectorRegistry(auto_describe=False)
        directory = multiprocess_dir()
        if directory:
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        else:
            registry.register(REGISTRY)
        return registry.collect()


def start_metrics_server(host: str, port: int) -> None:
    """Serve this process's metrics (every process's in multiprocess mode) at ``/metrics`` on
    a port of its own, in a background thread: for ``cerdas worker``, which has no HTTP API."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Exposition())
    start_http_server(port, addr=host, registry=registry)
    mark_dead_on_exit()


_exit_hook_pid: int | None = None


def mark_dead_on_exit() -> None:
    """In multiprocess mode, have prometheus_client forget this process's live gauges when
    it exits (its counters stay: they are totals). Idempotent per process."""
    global _exit_hook_pid
    if multiprocess_dir() is None or _exit_hook_pid == os.getpid():
        return
    _exit_hook_pid = os.getpid()
    atexit.register(lambda: multiprocess.mark_process_dead(os.getpid()))  # type: ignore[no-untyped-call]


def install_metrics(app: FastAPI, *, outbox: OutboxReader | None = None) -> None:
    """Count the app's requests and serve ``GET /metrics`` (text exposition format; not rate
    limited, not in the OpenAPI document). Call it after the other middlewares are added: the
    count then includes what they answer themselves (413, 408, 304)."""
    app.add_middleware(MetricsMiddleware)
    mark_dead_on_exit()

    async def metrics(request: Request) -> Response:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        extra = await scrape_time_families(runtime, outbox) if runtime is not None else []
        return Response(exposition(extra), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
