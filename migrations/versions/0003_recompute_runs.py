"""Recompute runs (many assessments as one job, with progress); result errors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recompute_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("framework_id", sa.String(length=64), nullable=True),
        sa.Column("period", sa.Integer(), nullable=True),
        sa.Column("region_code", sa.String(length=13), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("cursor_framework", sa.Integer(), nullable=False),
        sa.Column("cursor_after", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recompute_run")),
    )
    op.add_column("result_state", sa.Column("error", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    op.drop_column("result_state", "error")
    op.drop_table("recompute_run")
