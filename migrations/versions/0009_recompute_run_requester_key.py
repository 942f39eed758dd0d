"""A recompute run records the key that started it: a job is visible to whoever started it
(and to a ministry-admin).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recompute_run", sa.Column("requested_by_key", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        "fk_recompute_run_requested_by_key_api_key",
        "recompute_run",
        "api_key",
        ["requested_by_key"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint("fk_recompute_run_requested_by_key_api_key", "recompute_run")
    op.drop_column("recompute_run", "requested_by_key")
