"""Official published values of inner nodes (results letters), apart from entered leaf values.

A value on an inner node used to be entered like a leaf's, so a region could set its own
index. Inner values now come only from an official-result import by a ministry-admin, with
their source; scoring reads only the official column for inner nodes.

Existing data: a *verified* value on an inner node was entered by an assessor or a
ministry-admin (the seed cases' published figures among them): it becomes the node's official
value. A region's own (self) value on an inner node stays in its column for the record and no
longer counts. Every assessment with entered values is then marked for recompute (its revision
bumped, an outbox row written), so no score typed by a region survives the upgrade: the
sweeper recomputes them within seconds of the next start.

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
    # Which nodes are inner is in the framework files, read as they are at this upgrade.
    from services.scoring.frameworks import registry

    for framework in registry().values():
        inner = sorted(node.id for node in framework.nodes() if not node.is_leaf)
        op.execute(
            sa.text(
                """
                UPDATE assessment_input i
                SET official_value = i.verified_value,
                    official_source = 'verified value before official results'
                FROM assessment a
                WHERE a.id = i.assessment_id AND a.framework_id = :framework
                  AND i.node_id = ANY(:inner) AND i.verified_value IS NOT NULL
                  AND i.official_value IS NULL
                """
            ).bindparams(framework=framework.id, inner=inner)
        )
    op.execute(
        """
        WITH bumped AS (
            UPDATE assessment SET input_revision = input_revision + 1
            WHERE id IN (SELECT DISTINCT assessment_id FROM assessment_input)
            RETURNING id, input_revision
        )
        INSERT INTO recompute_request (assessment_id, revision, requested_at)
        SELECT id, input_revision, now() FROM bumped
        ON CONFLICT (assessment_id) DO UPDATE SET revision = excluded.revision
        """
    )


def downgrade() -> None:
    op.drop_column("assessment_input", "official_source")
    op.drop_column("assessment_input", "official_value")
