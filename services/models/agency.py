"""Perangkat daerah (OPD): the agencies of a region, and which of them answers for each
indicator of an assessment (the PJ, penanggung jawab)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, EnumText, TimestampMixin, one_of


class AgencyKind(StrEnum):
    """The kinds of perangkat daerah (PP 18/2016 and its amendments), as a region names them."""

    SEKRETARIAT = "sekretariat"
    INSPEKTORAT = "inspektorat"
    DINAS = "dinas"
    BADAN = "badan"
    KANTOR = "kantor"
    SATUAN = "satuan"  # Satpol PP
    RUMAH_SAKIT = "rumah-sakit"  # RSUD
    KECAMATAN = "kecamatan"
    LAINNYA = "lainnya"


class Agency(TimestampMixin, Base):
    """A perangkat daerah of a region: it owns indicators and evidence, and can be evaluated
    internally on an instrument (an assessment with its ``agency_id``, seen inside the region
    only and never in official figures)."""

    __tablename__ = "agency"
    __table_args__ = (
        UniqueConstraint("region_code", "name"),
        one_of("kind", AgencyKind, name="kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    region_code: Mapped[str] = mapped_column(
        String(13), ForeignKey("region.code", ondelete="RESTRICT"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    short_name: Mapped[str | None] = mapped_column(String(60))
    kind: Mapped[AgencyKind] = mapped_column(EnumText(AgencyKind, 16), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class NodeResponsibility(Base):
    """The agency responsible (PJ) for one indicator of an assessment."""

    __tablename__ = "node_responsibility"

    assessment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("assessment.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Removing an agency removes the indicators it answered for from it (audited).
    agency_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("agency.id", ondelete="CASCADE"), nullable=False, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
