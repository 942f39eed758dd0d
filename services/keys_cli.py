"""``cerdas keys``: API keys for machine clients, made and managed by an operator.

A secret is printed once, alone on stdout (``create``, ``rotate``), so ``$(cerdas keys create
...)`` is the key; what else there is to say goes to stderr as one ``cerdas: ...`` line, which
names the key's id. With ``--json`` stdout is one JSON object instead (with ``id`` and
``secret``). Errors are one line on stderr and exit 2.

Every change is audited like an API write: the actor is the operator, ``cerdas keys (CLI)``
(no key id, role ministry-admin), under a request id ``cli-<32 hex>`` made per command.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.domain.access.principal import Context, operator_context
from services.models import ApiKey, Role

if TYPE_CHECKING:
    from services.kit.runtime import Runtime

keys_app = typer.Typer(help="API keys for machine clients.", no_args_is_help=True)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object, for scripts")]


def cli_context() -> Context:
    """The context the CLI's key changes are audited under: the operator, a fresh request id."""
    return operator_context("cerdas keys (CLI)")


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "role": str(key.role),
        "regions": list(key.regions),
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _utc(at: str) -> str:
    return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _key_id(text: str) -> uuid.UUID:
    from services.cli import fail

    try:
        return uuid.UUID(text)
    except ValueError:
        raise fail(f"not a key id: {text!r} (see cerdas keys list)") from None


def _label(key: ApiKey) -> str:
    regions = f" for {', '.join(key.regions)}" if key.regions else ""
    return f"{key.role} key {key.id} ({key.name!r}{regions})"


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help=", ".join(Role))],
    name: Annotated[str, typer.Option(help="Who holds the key, e.g. 'Bogor Single Window'")],
    region: Annotated[
        list[str] | None, typer.Option(help="Region code the key may write (repeatable)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print its secret once; only its hash is stored."""
    from services.cli import fail, run_with_runtime
    from services.domain.access.policy import REGIONAL
    from services.domain.access.service import issue_key

    regions = region or []
    if role not in set(Role):
        raise fail(f"unknown role {role!r} (one of {', '.join(Role)})")
    if role in REGIONAL and not regions:
        raise fail(f"a {role} key needs --region (the region(s) it writes for)")

    async def run(runtime: Runtime) -> tuple[dict[str, Any], str]:
        async with runtime.sessionmaker() as session, session.begin():
            key, secret = await issue_key(
                session, cli_context(), name=name, role=Role(role), regions=regions
            )
            # created_at is the database's (set on insert, not read back): not shown here.
            made = {"id": str(key.id), "name": key.name, "role": str(key.role)}
            return {**made, "regions": list(key.regions), "prefix": key.prefix}, secret

    key, secret = run_with_runtime(run, log=False)
    typer.echo(json.dumps({**key, "secret": secret}) if as_json else secret)
    regions_text = f" for {', '.join(regions)}" if regions else ""
    typer.echo(
        f"cerdas: created {role} key {key['id']} ({name!r}{regions_text}); "
        "the secret is shown only this once",
        err=True,
    )


@keys_app.command("list")
def list_keys(as_json: JsonOption = False) -> None:
    """Every key, newest first: id, name, role, regions, prefix, created, revoked."""
    from services.cli import run_with_runtime
    from services.domain.access.service import keys

    async def run(runtime: Runtime) -> list[dict[str, Any]]:
        async with runtime.sessionmaker() as session:
            return [_key_json(key) for key in await keys(session)]

    rows = run_with_runtime(run, log=False)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    header = ("ID", "NAME", "ROLE", "REGIONS", "PREFIX", "CREATED", "REVOKED")
    table = [header] + [
        (
            row["id"],
            row["name"],
            row["role"],
            ",".join(row["regions"]) or "-",
            row["prefix"],
            _utc(row["created_at"]),
            _utc(row["revoked_at"]) if row["revoked_at"] else "-",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id")]) -> None:
    """Revoke a key: its secret is refused from the next request on.

    Revoking a revoked key changes nothing."""
    from services.cli import run_with_runtime
    from services.domain.access.service import revoke_key as revoke

    wanted = _key_id(key_id)

    async def run(runtime: Runtime) -> tuple[str, str]:
        async with runtime.sessionmaker() as session, session.begin():
            key = await revoke(session, cli_context(), wanted)
            assert key.revoked_at is not None
            return _label(key), key.revoked_at.isoformat()

    label, revoked_at = run_with_runtime(run, log=False)
    typer.echo(f"cerdas: {label} revoked (at {revoked_at})", err=True)


@keys_app.command("rotate")
def rotate_key(
    key_id: Annotated[str, typer.Argument(help="The key's id")], as_json: JsonOption = False
) -> None:
    """Give a key a new secret, printed once; the old one stops working.

    The key keeps its id, name, role and regions; a revoked key cannot be rotated."""
    from services.cli import run_with_runtime
    from services.domain.access.service import rotate_key as rotate

    wanted = _key_id(key_id)

    async def run(runtime: Runtime) -> tuple[dict[str, Any], str, str]:
        async with runtime.sessionmaker() as session, session.begin():
            key, secret = await rotate(session, cli_context(), wanted)
            return _key_json(key), _label(key), secret

    key, label, secret = run_with_runtime(run, log=False)
    typer.echo(json.dumps({**key, "secret": secret}) if as_json else secret)
    typer.echo(
        f"cerdas: rotated {label}; the old secret no longer works, "
        "the new one is shown only this once",
        err=True,
    )
