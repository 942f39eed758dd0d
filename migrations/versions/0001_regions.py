"""Regions: Kemendagri provinces and kabupaten/kota.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "region",
        sa.Column("code", sa.String(13), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("province_code", sa.String(13), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('provinsi', 'kabupaten', 'kota')", name="ck_region_kind"),
        sa.CheckConstraint(
            "(kind = 'provinsi') = (province_code IS NULL)", name="ck_region_province_of_kab_kota"
        ),
        sa.ForeignKeyConstraint(
            ["province_code"],
            ["region.code"],
            name="fk_region_province_code_region",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("code", name="pk_region"),
    )
    op.create_index("ix_region_kind", "region", ["kind"])
    op.create_index("ix_region_province_code_code", "region", ["province_code", "code"])


def downgrade() -> None:
    op.drop_table("region")
