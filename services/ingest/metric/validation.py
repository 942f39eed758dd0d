"""Checking one pushed metric point against the catalogue, with the reason when it fails."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from services.ingest.metric.catalogue import MetricDefinition

# Periods are calendar periods of Indonesia; WIB (UTC+7) decides what "today" is.
WIB = timezone(timedelta(hours=7))
_PATTERNS = {
    "year": re.compile(r"^(\d{4})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "day": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
}
_EXAMPLES = {"year": "2024", "month": "2024-05", "day": "2024-05-17"}
_FIELDS = frozenset({"region", "metric", "period", "timestamp", "value", "unit", "dimensions"})


# A valid point as the row it is staged as: (index in the request, region_code, metric, period,
# period_start, year, dimensions as JSON text, dimension_key, value). A plain tuple in the
# staging table's column order: a batch is thousands of them, COPYed or turned into arrays.
StagedRow = tuple[int, str, str, str, date, int, str, str, Decimal]
STAGED_COLUMNS = (
    "ord",
    "region_code",
    "metric",
    "period",
    "period_start",
    "year",
    "dimensions",
    "dimension_key",
    "value",
)


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    field: str
    reason: str

    def public(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


def today_wib() -> date:
    return datetime.now(UTC).astimezone(WIB).date()


def validate_point(
    raw: Any,
    index: int,
    *,
    catalogue: dict[str, MetricDefinition],
    regions: set[str],
    today: date,
) -> StagedRow | Rejection:
    if isinstance(raw, str):  # a row the reader could not even split into a point
        return Rejection(index, "", raw)
    if not isinstance(raw, dict):
        return Rejection(index, "", "a point must be an object")
    if not raw.keys() <= _FIELDS:
        unknown = sorted(set(raw) - _FIELDS, key=str)
        return Rejection(index, str(unknown[0]), f"unknown field {unknown[0]!r}")
    region = raw.get("region")
    if not isinstance(region, str) or region not in regions:
        return Rejection(index, "region", f"unknown region {region!r} (a Kemendagri code)")
    key = raw.get("metric")
    definition = catalogue.get(key) if isinstance(key, str) else None
    if definition is None:
        return Rejection(index, "metric", f"unknown metric {key!r}")
    unit = raw.get("unit")
    if unit is not None and unit != definition.unit:
        return Rejection(index, "unit", f"{key} is measured in {definition.unit!r}, not {unit!r}")
    text = raw.get("period")
    if isinstance(text, str) and raw.get("timestamp") is None:  # most points: a period label
        period = _calendar_period(text, definition.grain, definition.key)
    else:
        period = _period(raw, definition)
    if isinstance(period, str):
        return Rejection(index, "period", period)
    label, start = period
    if start > today:
        return Rejection(index, "period", f"period {label} is in the future")
    value = _value(raw.get("value"), definition)
    if isinstance(value, str):
        return Rejection(index, "value", value)
    raw_dimensions = raw.get("dimensions")
    if raw_dimensions is None:  # most points: no dimensions
        return (index, region, definition.key, label, start, start.year, "{}", "", value)
    dimensions = _dimensions(raw_dimensions, definition)
    if isinstance(dimensions, str):
        return Rejection(index, "dimensions", dimensions)
    dimension_key = ";".join(f"{name}={dimensions[name]}" for name in sorted(dimensions))
    dimension_text = json.dumps(dimensions)
    return (
        index,
        region,
        definition.key,
        label,
        start,
        start.year,
        dimension_text,
        dimension_key,
        value,
    )


def _period(raw: dict[str, Any], definition: MetricDefinition) -> tuple[str, date] | str:
    period, timestamp = raw.get("period"), raw.get("timestamp")
    if isinstance(period, str) and timestamp is None:
        return _calendar_period(period, definition.grain, definition.key)
    if (period is None) == (timestamp is None):
        return "give exactly one of 'period' or 'timestamp'"
    if timestamp is not None:
        try:
            moment = datetime.fromisoformat(str(timestamp))
        except ValueError:
            return f"timestamp {timestamp!r} is not ISO 8601"
        day = (moment.astimezone(WIB) if moment.tzinfo else moment).date()
        label = {"year": f"{day:%Y}", "month": f"{day:%Y-%m}", "day": f"{day:%Y-%m-%d}"}
        period = label[definition.grain]
    return _calendar_period(str(period), definition.grain, definition.key)


@lru_cache(maxsize=4096)
def _calendar_period(text: str, grain: str, key: str) -> tuple[str, date] | str:
    """A period label in ``grain`` and the day it starts (batches repeat a few periods)."""
    match = _PATTERNS[grain].match(text)
    if match is None:
        return f"period {text!r} does not fit {key}'s grain ({grain}: e.g. {_EXAMPLES[grain]})"
    parts = [int(part) for part in match.groups()] + [1] * (3 - len(match.groups()))
    try:
        start = date(parts[0], parts[1], parts[2])
    except ValueError:
        return f"period {text!r} is not a calendar date"
    return text, start


def _value(raw: Any, definition: MetricDefinition) -> Decimal | str:
    if type(raw) is int:  # the common case, exact and whole (so any type's)
        value = Decimal(raw)
        if definition.min <= value <= definition.max:
            return value
    elif isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        return f"value {raw!r} is not a number"
    else:
        try:
            # JSON floats arrive as their shortest decimal text, so str() keeps what was sent.
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            return f"value {raw!r} is not a number"
        if not value.is_finite():
            return f"value {raw!r} is not a finite number"
    if definition.type == "count" and value != value.to_integral_value():
        return f"{definition.key} is a count; {raw} is not a whole number"
    if not definition.min <= value <= definition.max:
        return (
            f"value {raw} is out of range for {definition.key} "
            f"({definition.min}–{definition.max} {definition.unit})"
        )
    return value


def _dimensions(raw: Any, definition: MetricDefinition) -> dict[str, str] | str:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return "dimensions must be an object of name → value"
    result: dict[str, str] = {}
    for name, value in raw.items():
        if name not in definition.dimensions:
            allowed = ", ".join(sorted(definition.dimensions)) or "none"
            return f"{definition.key} has no dimension {name!r} (allowed: {allowed})"
        allowed_values = definition.dimensions[name]
        if not isinstance(value, str) or not value or len(value) > 64:
            return f"dimension {name} must be a short text value"
        if allowed_values is not None and value not in allowed_values:
            return f"{name} {value!r} is not one of: {', '.join(sorted(allowed_values))}"
        result[str(name)] = value
    return result
