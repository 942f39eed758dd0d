"""Webhooks: a subscription's region scope (and an index on its maker, who owns it), a lease on
a delivery's attempt in progress (the POST runs outside any transaction), and stored outcomes
reduced to status codes and error classes (receivers' answers were kept in ``last_error``).

Existing subscriptions were all made by ministry-admin keys: ``regions`` NULL (every region).
Clear-text secrets stay as they are: the migration has no key; a secret without the ``v1:``
prefix is read as legacy clear text and sealed by the next delivery that reads it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_subscription",
        sa.Column("regions", postgresql.ARRAY(sa.String(length=13)), nullable=True),
    )
    op.create_index(
        op.f("ix_webhook_subscription_created_by"),
        "webhook_subscription",
        ["created_by"],
        unique=False,
    )
    op.add_column(
        "webhook_delivery",
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute(
        "UPDATE webhook_delivery SET last_error = CASE WHEN last_status_code IS NOT NULL "
        "THEN 'HTTP ' || last_status_code ELSE 'request failed' END "
        "WHERE last_error IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_column("webhook_delivery", "claimed_until")
    op.drop_index(op.f("ix_webhook_subscription_created_by"), table_name="webhook_subscription")
    op.drop_column("webhook_subscription", "regions")
