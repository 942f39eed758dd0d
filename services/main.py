"""The composition root: builds the ASGI apps of the gateway and ingest services.

Gateway, ingest and scoring never import each other; this module is where they meet, together
with the process lifecycle (migrate on start, the in-process worker of ``cerdas serve``).

One image, three services: ``cerdas serve gateway`` (reads, the workflow, keys, webhooks),
``cerdas serve ingest`` (metric pushes and evidence, ``/v1/metrics*`` and ``/v1/evidence*``) and
``cerdas worker``; ``cerdas serve`` is all of them in one process, for a laptop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services import __version__
from services.api.agency.router import router as agencies_router
from services.api.assessment.router import router as workflow_router
from services.api.audit.router import router as audit_router
from services.api.dashboard.pages import install_dashboard
from services.api.framework.router import router as frameworks_router
from services.api.health.router import router as health_router
from services.api.key.router import router as keys_router
from services.api.recompute.router import router as jobs_router
from services.api.region.router import router as regions_router
from services.api.result.exports import router as exports_router
from services.api.result.router import router as results_router
from services.api.webhook.router import router as webhooks_router
from services.demo import service as demo_data
from services.domain.access.cache import principal_cache
from services.domain.access.dependencies import (
    authenticate,
    count_anonymous,
    limit_anonymous,
    optional_principal,
)
from services.domain.recompute.service import outbox_backlog
from services.domain.region.seed import seed_regions
from services.ingest.evidence.router import router as evidence_router
from services.ingest.metric.router import router as metrics_router
from services.kit.docs import install_docs
from services.kit.edge import EdgeMiddleware
from services.kit.errors import install_problem_handlers
from services.kit.http import ConditionalGetMiddleware
from services.kit.metrics import install_metrics
from services.kit.migrate import upgrade_to_head
from services.kit.oidc import TokenVerifier
from services.kit.openapi import Callers, install_openapi
from services.kit.requests import RequestIdMiddleware
from services.kit.results_cache import CachedHits, ResultsCache
from services.kit.runtime import Runtime
from services.kit.settings import Settings
from services.kit.storage import storage_from_settings
from services.scoring.worker import SupervisedWorker

log = logging.getLogger(__name__)

API_DESCRIPTION = """
Cerdas serves Indonesia's smart-city evaluation (Gerakan Menuju 100 Smart City) and SPBE
evaluation as a live system: super-apps push metrics and evidence, assessors verify, a worker
recomputes indices, dashboards and ministry systems read JSON.

Errors are RFC 9457 `application/problem+json`; list endpoints paginate with opaque cursors.
"""


async def prepare_database(runtime: Runtime) -> None:
    """Migrate to head and load reference data; idempotent, safe on every start."""
    await upgrade_to_head(runtime.engine)
    async with runtime.sessionmaker() as session, session.begin():
        count = await seed_regions(session)
    log.info("schema at head; %d regions loaded", count)


def _report_exit(supervised: SupervisedWorker) -> Callable[[asyncio.Task[None]], None]:
    """The supervised worker only ends when cancelled; anything else is logged loudly and
    /readyz reports the worker as stopped."""

    def report(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        supervised.state = f"stopped ({type(error).__name__}: {error})"
        log.error("the in-process scoring worker died", exc_info=error)

    return report


# What a browser dashboard on an allowed origin may send, and read of the answer (CORS).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "X-Request-ID",
]
CORS_EXPOSED_HEADERS = [
    "ETag",
    "Link",
    "Location",
    "X-Request-ID",
    "Retry-After",
    "Idempotent-Replayed",
    "WWW-Authenticate",
    "Content-Disposition",
]

Service = Literal["all", "gateway", "ingest"]
SERVICES: tuple[Service, ...] = ("all", "gateway", "ingest")

GATEWAY_ROUTERS: tuple[APIRouter, ...] = (
    regions_router,
    frameworks_router,
    exports_router,
    results_router,
    jobs_router,
    workflow_router,
    webhooks_router,
    audit_router,
    keys_router,
    agencies_router,
)
INGEST_ROUTERS: tuple[APIRouter, ...] = (metrics_router, evidence_router)


def routers_of(service: Service) -> tuple[APIRouter, ...]:
    """The routers a service mounts (besides health): an ingress sends ``/v1/metrics*`` and
    ``/v1/evidence*`` to ingest and everything else to the gateway."""
    if service == "gateway":
        return GATEWAY_ROUTERS
    if service == "ingest":
        return INGEST_ROUTERS
    return GATEWAY_ROUTERS + INGEST_ROUTERS


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    service: Service = "all",
    migrate: bool = False,
    in_process_worker: bool = False,
    demo: bool = False,
) -> FastAPI:
    """The Cerdas ASGI app of ``service``: the gateway, ingest, or both (``all``).

    ``runtime`` lets a caller (tests, benchmarks) hand in open connections; otherwise the app
    opens its own from ``settings`` on startup and closes them on shutdown.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        current = runtime or await Runtime.open(settings)
        app.state.runtime = current
        app.state.sessionmaker = current.sessionmaker
        app.state.storage = storage = storage_from_settings(current.settings)
        app.state.results_cache = results_cache = ResultsCache(current.engine)
        if service != "ingest":  # the gateway serves the cached reads
            results_cache.start()
        # Every service authenticates API keys: their principals, kept until any key changes.
        app.state.principal_cache = keys_cache = principal_cache(current.engine)
        keys_cache.start()
        app.state.worker = None
        worker_task: asyncio.Task[None] | None = None
        try:
            if migrate:
                await prepare_database(current)
            if demo and not await demo_data.is_loaded(current):
                log.info(
                    "first start: loading the seed cases (%d scored)", await demo_data.load(current)
                )
            if in_process_worker:
                supervised = app.state.worker = SupervisedWorker(current)
                worker_task = asyncio.create_task(supervised.run(), name="scoring-worker")
                worker_task.add_done_callback(_report_exit(supervised))
            yield
        finally:
            if worker_task is not None:
                worker_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            await results_cache.close()
            await keys_cache.close()
            await storage.close()
            if owned:
                await current.close()

    app = FastAPI(
        title="Cerdas" if service == "all" else f"Cerdas {service}",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Served from installed assets by install_docs (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_docs(app, app.title)
    install_openapi(
        app,
        Callers(
            authenticating=(authenticate, optional_principal),
            rate_limiting=(limit_anonymous,),
            optional=(optional_principal,),
        ),
    )
    if service != "ingest":
        # Innermost (just outside the router): a cached anonymous read's hit, answered before
        # routing; every middleware below still sees it.
        app.add_middleware(CachedHits, count=count_anonymous)
    app.add_middleware(EdgeMiddleware, settings=settings)
    app.add_middleware(ConditionalGetMiddleware)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        # Outside the edge, so that its refusals (413, 408, 429) reach a browser readably too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            # Bearer tokens, not cookies: browsers need not send credentials.
            allow_credentials=False,
            max_age=600,
        )
    install_metrics(app, outbox=outbox_backlog)  # outermost: counts what the edge answers too
    app.include_router(health_router)  # probes are never rate limited
    for router in routers_of(service):
        app.include_router(router, dependencies=[Depends(limit_anonymous)])
    if service != "ingest":
        install_dashboard(app)  # the public pages belong to the gateway, beside the reads they use
    app.state.service = service
    # One per app: its cache of the issuers' keys is shared by the app's requests.
    app.state.token_verifier = TokenVerifier(
        settings.oidc_issuers,
        leeway_seconds=settings.oidc_leeway_seconds,
        cooldown_seconds=settings.oidc_jwks_cooldown_seconds,
    )
    return app
