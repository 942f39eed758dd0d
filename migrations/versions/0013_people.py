"""People in the record: those who sign in with their organisation's SSO (OpenID Connect).

``person``: one row per issuer and subject (``sub``), with the name and NIP the last token
carried. An assessor assignment names an assessor's key or a person (exactly one): the
assignment gets an id of its own, as (assessment, key) can no longer be its key. Evidence
requests and assessor output keep the person who wrote them beside the key; the audit trail
names the person (id, sub, NIP) beside the key id. Existing rows are kept as they are: each was
made by a key or an operator.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("nip", sa.String(length=32), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("issuer", "subject", name=op.f("uq_person_issuer_subject")),
    )

    op.drop_constraint(op.f("pk_assessment_assignment"), "assessment_assignment", type_="primary")
    op.add_column(
        "assessment_assignment",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
    )
    op.create_primary_key(op.f("pk_assessment_assignment"), "assessment_assignment", ["id"])
    op.alter_column("assessment_assignment", "key_id", nullable=True)
    op.add_column("assessment_assignment", sa.Column("person_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_assessment_assignment_person_id_person"),
        "assessment_assignment",
        "person",
        ["person_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_check_constraint(
        op.f("ck_assessment_assignment_one_assessor"),
        "assessment_assignment",
        "num_nonnulls(key_id, person_id) = 1",
    )
    op.create_unique_constraint(
        op.f("uq_assessment_assignment_assessment_id_key_id"),
        "assessment_assignment",
        ["assessment_id", "key_id"],
    )
    op.create_unique_constraint(
        op.f("uq_assessment_assignment_assessment_id_person_id"),
        "assessment_assignment",
        ["assessment_id", "person_id"],
    )
    op.create_index(
        op.f("ix_assessment_assignment_person_id"), "assessment_assignment", ["person_id"]
    )

    for table, column in (
        ("evidence_request", "requested_by_person"),
        ("assessor_output", "updated_by_person"),
    ):
        op.add_column(table, sa.Column(column, sa.Uuid(), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}_{column}_person"),
            table,
            "person",
            [column],
            ["id"],
            ondelete="SET NULL",
        )

    op.add_column("audit_event", sa.Column("actor_person_id", sa.Uuid(), nullable=True))
    op.add_column("audit_event", sa.Column("actor_subject", sa.String(length=255), nullable=True))
    op.add_column("audit_event", sa.Column("actor_nip", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_event", "actor_nip")
    op.drop_column("audit_event", "actor_subject")
    op.drop_column("audit_event", "actor_person_id")
    for table, column in (
        ("assessor_output", "updated_by_person"),
        ("evidence_request", "requested_by_person"),
    ):
        op.drop_constraint(op.f(f"fk_{table}_{column}_person"), table, type_="foreignkey")
        op.drop_column(table, column)

    # Assignments of people have no place in the old table.
    op.execute("DELETE FROM assessment_assignment WHERE person_id IS NOT NULL")
    op.drop_index(op.f("ix_assessment_assignment_person_id"), table_name="assessment_assignment")
    op.drop_constraint(
        op.f("uq_assessment_assignment_assessment_id_person_id"), "assessment_assignment"
    )
    op.drop_constraint(
        op.f("uq_assessment_assignment_assessment_id_key_id"), "assessment_assignment"
    )
    op.drop_constraint(op.f("ck_assessment_assignment_one_assessor"), "assessment_assignment")
    op.drop_constraint(
        op.f("fk_assessment_assignment_person_id_person"),
        "assessment_assignment",
        type_="foreignkey",
    )
    op.drop_column("assessment_assignment", "person_id")
    op.drop_constraint(op.f("pk_assessment_assignment"), "assessment_assignment", type_="primary")
    op.drop_column("assessment_assignment", "id")
    op.alter_column("assessment_assignment", "key_id", nullable=False)
    op.create_primary_key(
        op.f("pk_assessment_assignment"), "assessment_assignment", ["assessment_id", "key_id"]
    )
    op.drop_table("person")
