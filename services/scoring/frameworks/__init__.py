"""The framework files shipped with Cerdas (data), and a registry that loads them once.

A framework is one version of an instrument (its ``family``), in force for a range of periods:
:func:`in_force` names the version a period is evaluated on, :func:`link_sources` the sources a
linked leaf takes for a period.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from services.scoring.engine import (
    Framework,
    FrameworkError,
    LinkRule,
    check_families,
    check_links,
    load_framework,
)

FRAMEWORKS_DIR = Path(__file__).resolve().parent


def shipped_files() -> list[Path]:
    return sorted(FRAMEWORKS_DIR.glob("*.yaml"))


@lru_cache(maxsize=1)
def registry() -> dict[str, Framework]:
    """Every shipped framework by id, validated together (links resolve, no cycles, no two
    versions of one instrument in force for the same period)."""
    frameworks = {framework.id: framework for framework in map(load_framework, shipped_files())}
    issues = check_links(frameworks.values()) + check_families(frameworks.values())
    if issues:
        raise FrameworkError(issues)
    return frameworks


def get_framework(framework_id: str) -> Framework:
    frameworks = registry()
    if framework_id not in frameworks:
        raise KeyError(framework_id)
    return frameworks[framework_id]


def families() -> dict[str, list[Framework]]:
    """Each instrument's versions, oldest first."""
    grouped: dict[str, list[Framework]] = {}
    for framework in registry().values():
        grouped.setdefault(framework.family, []).append(framework)
    for versions in grouped.values():
        versions.sort(key=lambda f: (f.in_force.first or 0, f.id))
    return dict(sorted(grouped.items()))


def in_force(family: str, period: int) -> Framework | None:
    """The version of ``family`` that evaluates ``period``, if any."""
    for framework in families().get(family, []):
        if framework.in_force.covers(period):
            return framework
    return None


def link_sources(links: tuple[LinkRule, ...], period: int) -> tuple[LinkRule, ...]:
    """The sources of a linked leaf that count for ``period``: those whose framework is in
    force for it (at most one, checked when the files load)."""
    frameworks = registry()
    return tuple(link for link in links if frameworks[link.framework].in_force.covers(period))
