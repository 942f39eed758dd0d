"""A value taken from an outside index (IPD's I5, I6, I7, I18) records the date of the figure
beside where it was taken from (``official_source``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("assessment_input", sa.Column("source_date", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("assessment_input", "source_date")
