"""The recompute outbox and recompute runs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base


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
    # The key that started it (None: the CLI, or a key since deleted); it may follow the run.
    requested_by_key: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="SET NULL")
    )
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
