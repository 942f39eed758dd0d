"""Drop recompute_run.error: nothing ever wrote it (a run counts its failures in ``failed``;
the worker's log says why each one failed).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("recompute_run", "error")


def downgrade() -> None:
    op.add_column("recompute_run", sa.Column("error", sa.String(length=2000), nullable=True))
