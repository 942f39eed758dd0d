"""What the metric endpoints take and answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.metric.catalogue import Grain, MetricType
from services.kit.schemas import Page

MAX_BATCH = 5_000


class MetricBatch(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "points": [
                        {
                            "region": "32.71",
                            "metric": "integrated_apps",
                            "period": "2024-12",
                            "value": 148,
                        },
                        {
                            "region": "32.71",
                            "metric": "integrated_apps_target",
                            "period": "2024-12",
                            "value": 327,
                        },
                    ]
                }
            ]
        }
    )

    points: list[dict[str, Any]] = Field(
        max_length=MAX_BATCH,
        description=(
            "Up to 5,000 points, each {region, metric, period | timestamp, value, unit?, "
            "dimensions?}"
        ),
        json_schema_extra={
            "example": [
                {
                    "region": "32.71",
                    "metric": "integrated_apps",
                    "period": "2024-12",
                    "value": 148,
                    "unit": "apps",
                },
                {
                    "region": "32.71",
                    "metric": "integrated_apps_target",
                    "period": "2024-12",
                    "value": 327,
                },
                {
                    "region": "32.16",
                    "metric": "service_transactions",
                    "period": "2024-11",
                    "value": 5230,
                    "dimensions": {"service": "adminduk"},
                },
            ]
        },
    )


class Counts(BaseModel):
    received: int
    created: int
    updated: int
    unchanged: int
    rejected: int


class RejectedPoint(BaseModel):
    index: int = Field(description="Position of the point in the request (0-based; CSV: row)")
    field: str
    reason: str


class ImportSummaryOut(BaseModel):
    status: str = Field(description="ok, partial (atomic=false with rejections), dry_run, error")
    dry_run: bool
    atomic: bool
    stored: bool
    counts: Counts
    rejected: list[RejectedPoint]
    rejected_truncated: bool
    recomputes_requested: int


class MetricPointOut(BaseModel):
    id: int
    region: str
    metric: str
    period: str
    dimensions: dict[str, str]
    value: str
    updated_at: str


class MetricPage(BaseModel):
    items: list[MetricPointOut]
    next_cursor: str | None


class MetricDefinitionOut(BaseModel):
    """A metric of the catalogue, as a client must push it."""

    key: str = Field(examples=["integrated_apps"])
    name: str
    description: str
    type: MetricType
    unit: str = Field(examples=["apps"])
    min: str = Field(description="The smallest value accepted (a decimal, as text)")
    max: str = Field(description="The largest value accepted (a decimal, as text)")
    grain: Grain = Field(description="The period a point is for: day, month or year")
    dimensions: dict[str, list[str] | None] = Field(
        description="Dimension name → the values allowed (null: any value)"
    )


class MetricCatalogue(Page[MetricDefinitionOut]):
    """Every metric that may be pushed, on one page (``next_cursor`` null)."""
