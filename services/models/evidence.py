from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, TimestampMixin


class EvidenceObject(TimestampMixin, Base):
    """Stored bytes, addressed by their SHA-256: the same file uploaded twice is kept once."""

    __tablename__ = "evidence_object"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content_type: Mapped[str] = mapped_column(String(128), nullable=False)
    storage_key: Mapped[str] = mapped_column(String(300), nullable=False)


class EvidenceItem(TimestampMixin, Base):
    """A piece of evidence for an assessment, linked to framework nodes; it has revisions."""

    __tablename__ = "evidence_item"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), nullable=False, index=True
    )
    node_ids: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    # The agency (OPD) responsible for it, if the region named one.
    agency_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agency.id", ondelete="SET NULL"), index=True
    )
    latest_revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class EvidenceRevision(Base):
    __tablename__ = "evidence_revision"
    __table_args__ = (UniqueConstraint("item_id", "revision"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    item_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("evidence_item.id", ondelete="CASCADE"), nullable=False
    )
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("evidence_object.sha256", ondelete="RESTRICT"), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    uploaded_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="SET NULL")
    )
    uploaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
