"""Assessments, their entered values, assessor assignments, assessor output and evidence
requests."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, EnumText, TimestampMixin, one_of


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
    """A region's evaluation on one framework for one period (year and stage): the official
    one (``agency_id`` null), or an internal evaluation of one of its agencies (OPD), seen
    inside the region only (services.domain.access.policy) and never in official figures."""

    __tablename__ = "assessment"
    __table_args__ = (
        # One official assessment per region, framework, period and stage; beside it, one
        # internal assessment per agency.
        Index(
            "uq_assessment_official",
            "region_code",
            "framework_id",
            "period",
            "stage",
            unique=True,
            postgresql_where=text("agency_id IS NULL"),
        ),
        Index(
            "uq_assessment_internal",
            "agency_id",
            "framework_id",
            "period",
            "stage",
            unique=True,
            postgresql_where=text("agency_id IS NOT NULL"),
        ),
        one_of("state", AssessmentState, name="state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    region_code: Mapped[str] = mapped_column(
        String(13), ForeignKey("region.code", ondelete="RESTRICT"), nullable=False
    )
    framework_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    period: Mapped[int] = mapped_column(Integer, nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False, default="final")
    state: Mapped[AssessmentState] = mapped_column(
        EnumText(AssessmentState, 32), nullable=False, default=AssessmentState.DRAFT
    )
    # Bumped by every change to the assessment's inputs (values, metrics, linked results).
    input_revision: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The agency (OPD) evaluated internally; null for the region's official assessment.
    agency_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("agency.id", ondelete="RESTRICT"), nullable=True
    )

    @property
    def internal(self) -> bool:
        """An internal evaluation of an agency, not the region's official assessment."""
        return self.agency_id is not None


class AssessmentInput(Base):
    """A node's entered values: for a leaf, the region's own and the assessor's verified one;
    for an inner node (a component, a domain, the index), the official published value that a
    ministry-admin imported from a results letter, with where it was published."""

    __tablename__ = "assessment_input"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    self_value: Mapped[Any | None] = mapped_column(JSONB)
    verified_value: Mapped[Any | None] = mapped_column(JSONB)
    official_value: Mapped[Any | None] = mapped_column(JSONB)
    # Where the official value was published (a results letter), or for a leaf scored from an
    # outside index (IPD's I5: Bappenas's Satu Data Indonesia score) where its value was taken
    # from, and the date of that figure.
    official_source: Mapped[str | None] = mapped_column(String(300))
    source_date: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(2000))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class AssessorOutput(Base):
    """What the external assessor recorded on one node: whether evidence was uploaded, whether
    the interview (wawancara) confirmed it and whether it is approved, a note (catatan) and a
    recommendation (rekomendasi).

    The three judgements are null until the assessor makes them: "not judged yet" is not "no".
    The region reads a node's output once the assessment is published, or earlier when the
    assessor shares it (services.domain.access.policy.sees_assessor_output).
    """

    __tablename__ = "assessor_output"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    evidence_uploaded: Mapped[bool | None] = mapped_column(Boolean)
    interview_confirmed: Mapped[bool | None] = mapped_column(Boolean)
    approved: Mapped[bool | None] = mapped_column(Boolean)
    catatan: Mapped[str | None] = mapped_column(String(4000))
    rekomendasi: Mapped[str | None] = mapped_column(String(4000))
    shared_with_region: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    # The key or the person that wrote it last (neither for an operator's command); the audit
    # trail has each change with its author's name.
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="SET NULL")
    )
    updated_by_person: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("person.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class AssessmentAssignment(TimestampMixin, Base):
    """An assessor assigned to an assessment, an assessor's key or a person (signed in with
    their organisation's SSO): it may review and verify that one."""

    __tablename__ = "assessment_assignment"
    __table_args__ = (
        CheckConstraint("num_nonnulls(key_id, person_id) = 1", name="one_assessor"),
        UniqueConstraint("assessment_id", "key_id"),
        UniqueConstraint("assessment_id", "person_id"),
        Index("ix_assessment_assignment_person_id", "person_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), nullable=False
    )
    key_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("person.id", ondelete="CASCADE")
    )


class EvidenceRequest(TimestampMixin, Base):
    """An assessor's request for more evidence on some nodes (stage II "pendalaman")."""

    __tablename__ = "evidence_request"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), nullable=False, index=True
    )
    node_ids: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    message: Mapped[str] = mapped_column(String(4000), nullable=False)
    due_date: Mapped[date | None] = mapped_column(Date)
    # Who asked: an assessor's key, or a person.
    requested_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("api_key.id", ondelete="SET NULL")
    )
    requested_by_person: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("person.id", ondelete="SET NULL")
    )
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_by_item: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("evidence_item.id", ondelete="SET NULL")
    )
