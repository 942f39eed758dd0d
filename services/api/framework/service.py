"""The frameworks the API knows: the shipped framework files, by id."""

from __future__ import annotations

from services.kit.errors import NotFound
from services.scoring.engine import Framework
from services.scoring.frameworks import registry


def get_or_404(framework_id: str) -> Framework:
    framework = registry().get(framework_id)
    if framework is None:
        raise NotFound(f"No framework {framework_id!r} (known: {', '.join(sorted(registry()))}).")
    return framework
