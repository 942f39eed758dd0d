from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, String, UniqueConstraint, Uuid
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from services.models.base import Base, EnumText, TimestampMixin, one_of


class Role(StrEnum):
    """What a key may do; services.domain.access.policy says what each role may do."""

    SUPER_APP = "super-app"  # a region's super-app pushing metrics and evidence
    REGION_OPERATOR = "region-operator"  # a region's officer filling in its assessments
    ASSESSOR = "assessor"  # reviews and verifies the assessments it is assigned
    MINISTRY_ADMIN = "ministry-admin"  # national: assigns, publishes, reads everything


class ApiKey(TimestampMixin, Base):
    """A machine client's key. Only a SHA-256 of the secret is kept; the key is shown once."""

    __tablename__ = "api_key"
    __table_args__ = (one_of("role", Role, name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[Role] = mapped_column(EnumText(Role, 32), nullable=False)
    # Regions the key may write for (region-operator, super-app); empty for national roles.
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(13)), nullable=False, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Person(TimestampMixin, Base):
    """A person who signs in with an OpenID Connect token from a trusted issuer (their
    organisation's SSO), known by the issuer's subject identifier (``sub``).

    The row is made the first time the person signs in, or when a ministry-admin assigns them
    before that; the name and NIP are refreshed from each token (the token is the source: the
    role and regions are never stored, they are read from every token afresh).
    """

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    issuer: Mapped[str] = mapped_column(String(500), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    # Nomor Induk Pegawai (civil servant number), when the token carries it.
    nip: Mapped[str | None] = mapped_column(String(32))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
