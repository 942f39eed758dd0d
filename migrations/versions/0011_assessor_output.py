"""Assessor output per node, and the self-assessed and verified indices beside the index.

``assessor_output``: one row per assessment and node with what the external assessor recorded
(evidence uploaded, confirmed in the interview, approved: null until judged; catatan,
rekomendasi; whether the region may read it before publication), who wrote it last and when.

``result_state`` gains the index computed from the region's own values only and the one from
verified values only, with their predicates. Existing results have neither: every assessment
with a stored result is marked for recompute (its revision bumped, an outbox row written, as
0010 does), so the sweeper fills them within seconds of the next start.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assessor_output",
        sa.Column("assessment_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("evidence_uploaded", sa.Boolean(), nullable=True),
        sa.Column("interview_confirmed", sa.Boolean(), nullable=True),
        sa.Column("approved", sa.Boolean(), nullable=True),
        sa.Column("catatan", sa.String(length=4000), nullable=True),
        sa.Column("rekomendasi", sa.String(length=4000), nullable=True),
        sa.Column("shared_with_region", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["assessment.id"],
            name=op.f("fk_assessor_output_assessment_id_assessment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["api_key.id"],
            name=op.f("fk_assessor_output_updated_by_api_key"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("assessment_id", "node_id", name=op.f("pk_assessor_output")),
    )
    op.add_column("result_state", sa.Column("self_index_value", sa.Numeric(), nullable=True))
    op.add_column("result_state", sa.Column("self_predicate", sa.String(length=64), nullable=True))
    op.add_column("result_state", sa.Column("verified_index_value", sa.Numeric(), nullable=True))
    op.add_column(
        "result_state", sa.Column("verified_predicate", sa.String(length=64), nullable=True)
    )
    op.execute(
        """
        WITH bumped AS (
            UPDATE assessment SET input_revision = input_revision + 1
            WHERE id IN (SELECT assessment_id FROM result_state)
            RETURNING id, input_revision
        )
        INSERT INTO recompute_request (assessment_id, revision, requested_at)
        SELECT id, input_revision, now() FROM bumped
        ON CONFLICT (assessment_id) DO UPDATE SET revision = excluded.revision
        """
    )


def downgrade() -> None:
    op.drop_column("result_state", "verified_predicate")
    op.drop_column("result_state", "verified_index_value")
    op.drop_column("result_state", "self_predicate")
    op.drop_column("result_state", "self_index_value")
    op.drop_table("assessor_output")
