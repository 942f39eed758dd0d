"""The metric catalogue (catalogue.yaml): what may be pushed, in which unit, range and grain."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

MetricType = Literal["count", "ratio", "percent", "money", "duration", "score"]
Grain = Literal["day", "month", "year"]
_TYPES = ("count", "ratio", "percent", "money", "duration", "score")
_GRAINS = ("day", "month", "year")
CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    key: str
    name: str
    description: str
    type: MetricType
    unit: str
    min: Decimal
    max: Decimal
    grain: Grain
    # dimension name → allowed values (None: any value)
    dimensions: dict[str, frozenset[str] | None]

    def public(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "unit": self.unit,
            "min": str(self.min),
            "max": str(self.max),
            "grain": self.grain,
            "dimensions": {
                name: None if allowed is None else sorted(allowed)
                for name, allowed in self.dimensions.items()
            },
        }


def _definition(key: str, spec: dict[str, Any]) -> MetricDefinition:
    if spec.get("type") not in _TYPES or spec.get("grain") not in _GRAINS:
        raise ValueError(f"{CATALOGUE_FILE.name}: {key}: bad type or grain")
    dimensions: dict[str, frozenset[str] | None] = {}
    for name, allowed in (spec.get("dimensions") or {}).items():
        dimensions[str(name)] = None if allowed == "any" else frozenset(map(str, allowed))
    return MetricDefinition(
        key=key,
        name=str(spec["name"]),
        description=str(spec.get("description", "")),
        type=spec["type"],
        unit=str(spec["unit"]),
        min=Decimal(str(spec["min"])),
        max=Decimal(str(spec["max"])),
        grain=spec["grain"],
        dimensions=dimensions,
    )


@lru_cache(maxsize=1)
def catalogue() -> dict[str, MetricDefinition]:
    document = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    return {str(key): _definition(str(key), spec) for key, spec in document["metrics"].items()}
