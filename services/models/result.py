"""Computed results: the state of an assessment's results and every node's value."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Numeric,
    String,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


class ResultState(Base):
    """What the stored results of an assessment were computed from."""

    __tablename__ = "result_state"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    input_revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    framework_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    index_value: Mapped[Decimal | None] = mapped_column(Numeric)
    predicate: Mapped[str | None] = mapped_column(String(64))
    # The same engine run on the region's own values only, and on verified values only (a leaf
    # without one is missing): the self-assessed and the verified index, side by side.
    self_index_value: Mapped[Decimal | None] = mapped_column(Numeric)
    self_predicate: Mapped[str | None] = mapped_column(String(64))
    verified_index_value: Mapped[Decimal | None] = mapped_column(Numeric)
    verified_predicate: Mapped[str | None] = mapped_column(String(64))
    complete: Mapped[bool] = mapped_column(nullable=False)
    # Why inputs could not be scored (e.g. a value off a changed framework's scale), if so.
    error: Mapped[str | None] = mapped_column(String(2000))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ResultNode(Base):
    """One node of an assessment's computed result; the whole set is replaced per recompute."""

    __tablename__ = "result_node"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[Decimal | None] = mapped_column(Numeric)
    weight: Mapped[Decimal | None] = mapped_column(Numeric)
    contribution: Mapped[Decimal | None] = mapped_column(Numeric)
    predicate: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    input_revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
