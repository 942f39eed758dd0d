"""The framework files shipped with Cerdas (data), and a registry that loads them once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from services.scoring.engine import Framework, FrameworkError, check_links, load_framework

FRAMEWORKS_DIR = Path(__file__).resolve().parent


def shipped_files() -> list[Path]:
    return sorted(FRAMEWORKS_DIR.glob("*.yaml"))


@lru_cache(maxsize=1)
def registry() -> dict[str, Framework]:
    """Every shipped framework by id, validated together (links resolve, no cycles)."""
    frameworks = {framework.id: framework for framework in map(load_framework, shipped_files())}
    issues = check_links(frameworks.values())
    if issues:
        raise FrameworkError(issues)
    return frameworks


def get_framework(framework_id: str) -> Framework:
    frameworks = registry()
    if framework_id not in frameworks:
        raise KeyError(framework_id)
    return frameworks[framework_id]
