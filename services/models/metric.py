"""Metric points pushed by super-apps."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


class MetricPoint(Base):
    """One value of a catalogue metric for a region and period (and dimensions, e.g. service)."""

    __tablename__ = "metric_point"
    __table_args__ = (
        UniqueConstraint("region_code", "metric", "period", "dimension_key"),
        Index("ix_metric_point_region_year", "region_code", "year", "metric"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    region_code: Mapped[str] = mapped_column(
        String(13), ForeignKey("region.code", ondelete="RESTRICT"), nullable=False
    )
    metric: Mapped[str] = mapped_column(String(64), nullable=False)
    # "2024", "2024-05" or "2024-05-17", by the metric's grain; year for assessment lookups.
    period: Mapped[str] = mapped_column(String(10), nullable=False)
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    year: Mapped[int] = mapped_column(Integer, nullable=False)
    dimensions: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    # Canonical text of the dimensions, so uniqueness covers them ("" when none).
    dimension_key: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    value: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    source_key_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
