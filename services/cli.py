"""The ``cerdas`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from services import __version__
from services.keys_cli import keys_app
from services.kit.embedded import EmbeddedServerNotReady, EmbeddedServers, ServerAlreadyRunning
from services.kit.errors import ProblemError
from services.kit.logs import configure_logging, uvicorn_log_config
from services.kit.settings import Settings, SettingsError, load_settings
from services.scoring.cli import frameworks_app, plan, score

if TYPE_CHECKING:
    from services.kit.runtime import Runtime
    from services.main import Service

T = TypeVar("T")

app = typer.Typer(
    help="Cerdas: the live backend of the smart-city and SPBE evaluations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(score)
app.command()(plan)
app.add_typer(frameworks_app, name="frameworks")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cerdas {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Cerdas: the live backend of the smart-city and SPBE evaluations."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error to stderr; the caller raises what this returns."""
    typer.echo(f"cerdas: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from None


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings)  # CERDAS_LOG_LEVEL, CERDAS_LOG_FORMAT (services/kit/logs.py)


@contextlib.contextmanager
def resolved(settings: Settings, *, serving: str | None = None) -> Iterator[Settings]:
    """``settings`` with DATABASE_URL/REDIS_URL filled in from the data folder's embedded servers
    when unset: those already running there (another ``cerdas`` process's), else started here.

    ``serving`` is the address of a ``cerdas serve``: a second one on the same data folder fails
    with one line naming the first. Servers another process started are never stopped here."""
    if settings.database_url and settings.redis_url:
        yield settings
        return
    servers = EmbeddedServers(
        settings.data_dir,
        want_postgres=not settings.database_url,
        want_redis=not settings.redis_url,
        address=serving,
        announce=lambda message: typer.echo(f"cerdas: {message}", err=True),
    )
    try:
        try:
            servers.start()
        except ServerAlreadyRunning as exc:
            raise fail(
                f"a server is already running on this data folder (pid {exc.pid}, {exc.address}); "
                "stop it first or set CERDAS_DATA_DIR",
                code=1,
            ) from None
        except EmbeddedServerNotReady as exc:
            raise fail(str(exc), code=1) from None
        yield settings.model_copy(
            update={
                "database_url": settings.database_url or servers.database_url,
                "redis_url": settings.redis_url or servers.redis_url,
            }
        )
    finally:
        servers.stop()


def run_with_runtime(work: Callable[[Runtime], Awaitable[T]], *, log: bool = True) -> T:
    """Run ``work`` with a runtime opened on the configured (or embedded) servers, closed after."""
    from services.kit.runtime import Runtime

    settings = _settings()
    if log:
        _configure_logging(settings)

    async def run(ready: Settings) -> T:
        runtime = await Runtime.open(ready)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    with resolved(settings) as ready:
        try:
            return asyncio.run(run(ready))
        except ProblemError as exc:  # what the API would answer 4xx: one line, exit 2
            raise fail(str(exc)) from None


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host


def _exit_gracefully(signum: int, frame: object) -> None:
    raise SystemExit(0)


serve_app = typer.Typer(
    help="Serve the HTTP APIs: all in one (no subcommand), or one service of the production shape.",
    invoke_without_command=True,
)
HostOption = Annotated[str | None, typer.Option(help="Bind address (CERDAS_HOST)")]
PortOption = Annotated[int | None, typer.Option(help="Port (PORT, default 8000)")]
MigrateOption = Annotated[
    bool,
    typer.Option(
        help="Migrate on start (production runs `cerdas migrate` once, as a Job, instead)"
    ),
]


@serve_app.callback()
def serve(
    ctx: typer.Context,
    host: HostOption = None,
    port: PortOption = None,
    demo: Annotated[
        bool | None,
        typer.Option(help="Load the seed cases on start (default: only on the embedded database)"),
    ] = None,
) -> None:
    """Serve the gateway and ingest APIs with an in-process worker; migrates on start.

    One per data folder: other `cerdas` commands share its embedded servers. In production,
    run `cerdas serve gateway`, `cerdas serve ingest` and `cerdas worker` as separate services
    and `cerdas migrate` once per release."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    # The embedded default is a fresh, local database: show real figures on first start.
    load_demo = demo if demo is not None else not settings.database_url
    _serve(settings, "all", host, port, migrate=True, in_process_worker=True, demo=load_demo)


@serve_app.command("gateway")
def serve_gateway(
    host: HostOption = None, port: PortOption = None, migrate: MigrateOption = False
) -> None:
    """The gateway service: every API but /v1/metrics* and /v1/evidence*.

    Regions, frameworks, assessments and their workflow, results, rankings, exports, recompute
    runs, webhooks, audit and keys. No worker: run `cerdas worker` beside it."""
    _serve(_settings(), "gateway", host, port, migrate=migrate)


@serve_app.command("ingest")
def serve_ingest(
    host: HostOption = None, port: PortOption = None, migrate: MigrateOption = False
) -> None:
    """The ingest service: /v1/metrics* and /v1/evidence*.

    Metric pushes and CSV imports, evidence uploads and downloads, for the regions' super-apps.
    No worker: run `cerdas worker` beside it."""
    _serve(_settings(), "ingest", host, port, migrate=migrate)


def _serve(
    settings: Settings,
    service: Service,
    host: str | None,
    port: int | None,
    *,
    migrate: bool,
    in_process_worker: bool = False,
    demo: bool = False,
) -> None:
    import uvicorn

    from services.main import create_app

    _configure_logging(settings)
    host, port = host or settings.host, port or settings.port
    # Only the all-in-one `cerdas serve` claims the data folder: gateway and ingest processes
    # may share it (and its embedded servers) with each other and with workers.
    serving = f"http://{_url_host(host)}:{port}" if service == "all" else None
    with resolved(settings, serving=serving) as ready:
        api = create_app(
            ready,
            service=service,
            migrate=migrate,
            in_process_worker=in_process_worker,
            demo=demo,
        )
        # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the
        # handler that was there before it; make that an orderly exit, so the embedded servers
        # are stopped on the way out.
        signal.signal(signal.SIGTERM, _exit_gracefully)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                api,
                host=host,
                port=port,
                log_level=ready.log_level,
                log_config=uvicorn_log_config(ready),
                proxy_headers=True,
            )


app.add_typer(serve_app, name="serve")


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics at /metrics on this port (CERDAS_WORKER_METRICS_PORT)"
        ),
    ] = None,
) -> None:
    """Run the scoring worker alone (production shape: one deployment per process kind).

    It starts while Redis is down and reconnects with backoff whenever Redis goes away; SIGTERM
    or SIGINT stop it after the running jobs are cancelled (they are retried elsewhere)."""
    from services.kit.metrics import start_metrics_server
    from services.scoring.worker import SupervisedWorker

    log = logging.getLogger("services.cli")
    settings = _settings()
    port = metrics_port or settings.worker_metrics_port
    if port is not None:
        start_metrics_server(settings.host, port)

    async def run(runtime: Runtime) -> None:
        task = asyncio.create_task(SupervisedWorker(runtime).run())
        loop = asyncio.get_running_loop()

        def stop(signum: signal.Signals) -> None:
            log.info("%s: stopping the scoring worker", signum.name)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            await task
        except asyncio.CancelledError:
            log.info("scoring worker stopped")

    run_with_runtime(run)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest migration and load the region list."""
    from services.main import prepare_database

    run_with_runtime(prepare_database)
    typer.echo("cerdas: database at the newest migration")


@app.command()
def recompute(
    all_: Annotated[bool, typer.Option("--all", help="Every assessment")] = False,
    framework: Annotated[str | None, typer.Option(help="Only this framework id")] = None,
    period: Annotated[int | None, typer.Option(help="Only this year")] = None,
    region: Annotated[str | None, typer.Option(help="Only this region code")] = None,
) -> None:
    """Recompute assessments here and now, in batches, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from services.domain.access.principal import operator_context
    from services.domain.recompute import repository
    from services.domain.recompute.service import create_run
    from services.scoring.service import run_step

    if not (all_ or framework or period or region):
        raise fail("say what to recompute: --all, or --framework/--period/--region")

    async def run(runtime: Runtime) -> tuple[int, int]:
        async with runtime.sessionmaker() as session, session.begin():
            created = await create_run(
                session,
                operator_context("cerdas recompute"),
                framework_id=framework,
                period=period,
                region_code=region,
                queue=None,  # run here, step by step, not by the worker
            )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task("recomputing", total=created.total)
            while (step := await run_step(runtime.sessionmaker, created.id, None)) is not None:
                progress.update(task, completed=step.done + step.failed)
            progress.update(task, completed=created.total)
        async with runtime.sessionmaker() as session:
            final = await repository.get_run(session, created.id)
            assert final is not None
            return final.done, final.failed

    done, failed = run_with_runtime(run)
    typer.echo(f"cerdas: recomputed {done} assessments" + (f", {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)


@app.command("demo")
def load_demo_data(
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Load into a configured DATABASE_URL (not the embedded one)"),
    ] = False,
) -> None:
    """Load the seed cases (Kabupaten Bekasi, Kota Bogor, Kota Bekasi, Kebumen) and score them."""
    from services.demo.service import load
    from services.main import prepare_database

    if _settings().database_url and not yes:
        # The seed cases are published figures of real regions: in a live database they would
        # stand beside (and block the opening of) the regions' own assessments.
        raise fail(
            "the seed cases add published assessments for real regions; to load them into the "
            "configured DATABASE_URL, pass --yes"
        )

    async def run(runtime: Runtime) -> int:
        await prepare_database(runtime)
        return await load(runtime)

    scored = run_with_runtime(run)
    typer.echo(
        f"cerdas: seed cases loaded where absent (existing data left as it is), "
        f"{scored} assessments scored"
    )


app.add_typer(keys_app, name="keys")


if __name__ == "__main__":  # pragma: no cover
    app()
