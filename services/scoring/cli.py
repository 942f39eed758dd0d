"""``cerdas score``, ``cerdas plan`` and ``cerdas frameworks``: the engine from the command line,
no database."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.scoring.engine import (
    Framework,
    FrameworkError,
    InputError,
    Inputs,
    PlanError,
    Result,
    check_families,
    check_links,
    evaluate,
    load_framework,
)
from services.scoring.engine import plan as planner
from services.scoring.engine.numbers import decimal_text
from services.scoring.frameworks import families, registry

frameworks_app = typer.Typer(help="List and validate framework files.", no_args_is_help=True)


class UsageProblem(Exception):
    """Bad input to a command: printed as one line, exit code 2."""


def resolve_framework(ref: str) -> Framework:
    """A shipped framework by id, or a framework file by path."""
    path = Path(ref)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        try:
            return load_framework(path)
        except FrameworkError as exc:
            raise UsageProblem(_first_issue(exc)) from None
    frameworks = registry()
    if ref not in frameworks:
        raise UsageProblem(f"unknown framework {ref!r} (shipped: {', '.join(sorted(frameworks))})")
    return frameworks[ref]


def read_inputs(path: Path) -> Inputs:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read input file {path}: {exc.__class__.__name__}") from None
    try:
        document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"input file {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageProblem(f"input file {path}: expected an object with 'values'")
    unknown = sorted(set(document) - {"values", "metrics", "linked"})
    if unknown:
        raise UsageProblem(
            f"input file {path}: unknown key {unknown[0]!r} (expected values, metrics, linked)"
        )
    parts: dict[str, Any] = {}
    for key in ("values", "metrics", "linked"):
        part = document.get(key, {})
        if not isinstance(part, dict):
            raise UsageProblem(f"input file {path}: {key!r} must be an object")
        parts[key] = part
    return Inputs(**parts)


def score(
    framework: Annotated[str, typer.Option(help="Shipped framework id, or a .yaml file")],
    input_file: Annotated[
        Path, typer.Option("--input", help='JSON file: {"values": {node id: number}} ("-": stdin)')
    ],
    explain: Annotated[bool, typer.Option(help="Print a readable table of the tree")] = False,
) -> None:
    """Score one input file on a framework and print the result as JSON."""
    try:
        resolved = resolve_framework(framework)
        result = evaluate(resolved, read_inputs(input_file), strict=True)
    except (UsageProblem, InputError) as exc:
        typer.echo(f"cerdas: {exc}", err=True)
        raise typer.Exit(2) from None
    if explain:
        print_explanation(result)
    else:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))


def plan(
    framework: Annotated[str, typer.Option(help="Shipped framework id, or a .yaml file")],
    input_file: Annotated[
        Path, typer.Option("--input", help='JSON file: {"values": {node id: number}} ("-": stdin)')
    ],
    target: Annotated[
        str, typer.Option(help='An index value (3.50) or a predicate ("Sangat Baik")')
    ],
    costs_file: Annotated[
        Path | None,
        typer.Option("--costs", help="JSON file: {node id: cost of one step} (default 1 each)"),
    ] = None,
    increment: Annotated[
        str | None,
        typer.Option(help="Step of decimal-scale leaves (default: the framework's precision)"),
    ] = None,
) -> None:
    """The cheapest improvements of the assessed leaves that bring the index to a target,
    printed as JSON (docs/planner.md)."""
    try:
        resolved = resolve_framework(framework)
        inputs = read_inputs(input_file)
        costs = read_costs(costs_file) if costs_file is not None else None
        result = planner(resolved, inputs, target, costs=costs, increment=increment)
    except (UsageProblem, InputError, PlanError) as exc:
        typer.echo(f"cerdas: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))


def read_costs(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read costs file {path}: {exc.__class__.__name__}") from None
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"costs file {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageProblem(f"costs file {path}: expected an object of node id → cost of a step")
    return document


def print_explanation(result: Result) -> None:
    framework = result.framework
    table = Table(title=f"{framework.name} ({framework.id}, version {framework.version})")
    for column in ("node", "name", "value", "weight", "contribution", "predicate", "source"):
        table.add_column(column, justify="right" if column in {"value", "weight"} else "left")
    for node in framework.nodes():
        node_result = result.nodes[node.id]
        depth = node.path.count("/")
        table.add_row(
            "  " * depth + node.id,
            node.name,
            _show(node_result.value),
            _show(node_result.weight) if node_result.parent else "",
            _show(node_result.contribution),
            node_result.predicate or "",
            node_result.source,
        )
    console = Console(width=160)
    console.print(table)
    console.print(
        f"index {_show(result.index.value)}"
        + (f" ({result.index.predicate})" if result.index.predicate else "")
    )


@frameworks_app.command("list")
def list_frameworks() -> None:
    """The shipped frameworks by instrument: the periods each version is in force for, its
    status (official, provisional or Cerdas's own) and its source."""
    rows = [("framework", "family", "in force", "status", "nodes", "name")]
    notes: list[str] = []
    for versions in families().values():
        for framework in versions:
            count = sum(1 for _ in framework.nodes())
            rows.append(
                (
                    framework.id,
                    framework.family,
                    framework.in_force.describe(),
                    framework.status,
                    str(count),
                    framework.name,
                )
            )
            notes.append(f"{framework.id}: source: {framework.source or 'not given'}")
            if framework.status_note:
                notes.append(f"{framework.id}: {framework.status}: {framework.status_note}")
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
    typer.echo("")
    for note in notes:
        typer.echo(note)


@frameworks_app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Framework files to check")],
) -> None:
    """Check framework files: structure, weights, bands, ids, and links (no cycles)."""
    loaded: list[Framework] = []
    problems: list[str] = []
    for path in files:
        try:
            loaded.append(load_framework(path))
        except FrameworkError as exc:
            problems.extend(str(issue) for issue in exc.issues)
    by_id = {framework.id: framework for framework in registry().values()}
    by_id.update({framework.id: framework for framework in loaded})
    given = {framework.id for framework in loaded}
    problems.extend(
        str(issue)
        for issue in check_links(by_id.values()) + check_families(by_id.values())
        if any(
            issue.file == framework.file for framework in by_id.values() if framework.id in given
        )
    )
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    for framework in loaded:
        count = sum(1 for _ in framework.nodes())
        typer.echo(f"ok: {framework.file} ({framework.id} {framework.version}, {count} nodes)")


def _first_issue(exc: FrameworkError) -> str:
    more = len(exc.issues) - 1
    return str(exc.issues[0]) + (f" (and {more} more problems)" if more else "")


def _show(value: Decimal | None) -> str:
    return decimal_text(value) or ""
