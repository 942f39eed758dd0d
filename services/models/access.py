from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, String, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, TimestampMixin

ROLES = ("super-app", "region-operator", "assessor", "ministry-admin")


class ApiKey(TimestampMixin, Base):
    """A machine client's key. Only a SHA-256 of the secret is kept; the key is shown once."""

    __tablename__ = "api_key"
    __table_args__ = (
        CheckConstraint(
            "role IN ('super-app', 'region-operator', 'assessor', 'ministry-admin')", name="role"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    # Regions the key may write for (region-operator, super-app); empty for national roles.
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(13)), nullable=False, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
