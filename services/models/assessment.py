from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, TimestampMixin, one_of


class AssessmentState(StrEnum):
    """Where an assessment is in the workflow; services.domain.assessment.states holds every
    allowed move between them."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    EVIDENCE_REQUESTED = "evidence_requested"
    VERIFIED = "verified"
    PUBLISHED = "published"


class Assessment(TimestampMixin, Base):
    """A region's evaluation on one framework for one period (year and stage)."""

    __tablename__ = "assessment"
    __table_args__ = (
        UniqueConstraint("region_code", "framework_id", "period", "stage"),
        one_of("state", AssessmentState, name="state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    region_code: Mapped[str] = mapped_column(
        String(13), ForeignKey("region.code", ondelete="RESTRICT"), nullable=False
    )
    framework_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    period: Mapped[int] = mapped_column(Integer, nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False, default="final")
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="draft")
    # Bumped by every change to the assessment's inputs (values, metrics, linked results).
    input_revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class AssessmentInput(Base):
    """A leaf's (or stand-in node's) value: the region's own and the assessor's verified one."""

    __tablename__ = "assessment_input"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    self_value: Mapped[Any | None] = mapped_column(JSONB)
    verified_value: Mapped[Any | None] = mapped_column(JSONB)
    note: Mapped[str | None] = mapped_column(String(2000))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RecomputeRequest(Base):
    """Outbox: an assessment whose inputs changed, written in the same transaction as the change.

    The worker deletes it once results at ``revision`` or newer are stored; the sweeper
    re-enqueues rows that wait too long, so nothing depends on Redis having kept a job.
    """

    __tablename__ = "recompute_request"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


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


class RecomputeRun(Base):
    """A recompute of many assessments (e.g. national, one framework and year), with progress."""

    __tablename__ = "recompute_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    framework_id: Mapped[str | None] = mapped_column(String(64))
    period: Mapped[int | None] = mapped_column(Integer)
    region_code: Mapped[str | None] = mapped_column(String(13))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    requested_by: Mapped[str] = mapped_column(String(200), nullable=False)
    # Where the run stands: the framework (index in link order) and the last assessment done.
    cursor_framework: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cursor_after: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
