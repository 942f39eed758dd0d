"""Official published values of inner nodes (results letters), apart from entered leaf values.

A value on an inner node used to be entered like a leaf's, so a region could set its own
index. Inner values now come only from an official-result import by a ministry-admin, with
their source; inner-node values entered the old way no longer count (scoring reads only the
official column for inner nodes) and stay in their columns for the record.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "assessment_input", sa.Column("official_value", postgresql.JSONB(), nullable=True)
    )
    op.add_column(
        "assessment_input", sa.Column("official_source", sa.String(length=300), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("assessment_input", "official_source")
    op.drop_column("assessment_input", "official_value")
