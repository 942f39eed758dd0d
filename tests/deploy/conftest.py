"""What the deploy tests share: the contract of the image's commands and where deploy/ is."""

from __future__ import annotations

from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# `cerdas …` as production runs it (../shared/DESIGN.md, Processes; services/cli.py): the
# arguments after the image's ENTRYPOINT, by process.
CONTRACT: dict[str, list[str]] = {
    "gateway": ["serve", "gateway"],
    "ingest": ["serve", "ingest"],
    "worker": ["worker"],
    "migrate": ["migrate"],
}
