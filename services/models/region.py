from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, EnumText, TimestampMixin, one_of


class RegionKind(StrEnum):
    PROVINSI = "provinsi"
    KABUPATEN = "kabupaten"
    KOTA = "kota"


class Region(TimestampMixin, Base):
    """A Kemendagri region: a province, or a kabupaten/kota under its province."""

    __tablename__ = "region"
    __table_args__ = (
        one_of("kind", RegionKind, name="kind"),
        CheckConstraint(
            f"(kind = '{RegionKind.PROVINSI}') = (province_code IS NULL)",
            name="province_of_kab_kota",
        ),
        Index("ix_region_province_code_code", "province_code", "code"),
    )

    code: Mapped[str] = mapped_column(String(13), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    kind: Mapped[RegionKind] = mapped_column(EnumText(RegionKind, 16), nullable=False, index=True)
    province_code: Mapped[str | None] = mapped_column(
        String(13), ForeignKey("region.code", ondelete="RESTRICT"), nullable=True
    )
