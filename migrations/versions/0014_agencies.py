"""Perangkat daerah (OPD): agencies of a region, the agency responsible (PJ) for each indicator
of an assessment and for each evidence item, and internal assessments of an agency beside the
region's official one.

The unique constraint region × framework × period × stage becomes two partial unique indexes:
one official assessment (no agency) per region, framework, period and stage, and one internal
assessment per agency, framework, period and stage.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "sekretariat",
    "inspektorat",
    "dinas",
    "badan",
    "kantor",
    "satuan",
    "rumah-sakit",
    "kecamatan",
    "lainnya",
)


def upgrade() -> None:
    op.create_table(
        "agency",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("region_code", sa.String(length=13), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("short_name", sa.String(length=60), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")",
            name=op.f("ck_agency_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["region_code"],
            ["region.code"],
            name=op.f("fk_agency_region_code_region"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency")),
        sa.UniqueConstraint("region_code", "name", name=op.f("uq_agency_region_code_name")),
    )
    op.create_table(
        "node_responsibility",
        sa.Column("assessment_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("agency_id", sa.Uuid(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agency.id"],
            name=op.f("fk_node_responsibility_agency_id_agency"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["assessment.id"],
            name=op.f("fk_node_responsibility_assessment_id_assessment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("assessment_id", "node_id", name=op.f("pk_node_responsibility")),
    )
    op.create_index(op.f("ix_node_responsibility_agency_id"), "node_responsibility", ["agency_id"])

    op.add_column("assessment", sa.Column("agency_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_assessment_agency_id_agency"),
        "assessment",
        "agency",
        ["agency_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.drop_constraint(
        "uq_assessment_region_code_framework_id_period_stage", "assessment", type_="unique"
    )
    op.create_index(
        "uq_assessment_official",
        "assessment",
        ["region_code", "framework_id", "period", "stage"],
        unique=True,
        postgresql_where=sa.text("agency_id IS NULL"),
    )
    op.create_index(
        "uq_assessment_internal",
        "assessment",
        ["agency_id", "framework_id", "period", "stage"],
        unique=True,
        postgresql_where=sa.text("agency_id IS NOT NULL"),
    )

    op.add_column("evidence_item", sa.Column("agency_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_evidence_item_agency_id_agency"),
        "evidence_item",
        "agency",
        ["agency_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_evidence_item_agency_id"), "evidence_item", ["agency_id"])


def downgrade() -> None:
    # Internal assessments have no place in the schema before this revision.
    op.execute("DELETE FROM assessment WHERE agency_id IS NOT NULL")
    op.drop_index(op.f("ix_evidence_item_agency_id"), table_name="evidence_item")
    op.drop_constraint(
        op.f("fk_evidence_item_agency_id_agency"), "evidence_item", type_="foreignkey"
    )
    op.drop_column("evidence_item", "agency_id")
    op.drop_index("uq_assessment_internal", table_name="assessment")
    op.drop_index("uq_assessment_official", table_name="assessment")
    op.create_unique_constraint(
        "uq_assessment_region_code_framework_id_period_stage",
        "assessment",
        ["region_code", "framework_id", "period", "stage"],
    )
    op.drop_constraint(op.f("fk_assessment_agency_id_agency"), "assessment", type_="foreignkey")
    op.drop_column("assessment", "agency_id")
    op.drop_index(op.f("ix_node_responsibility_agency_id"), table_name="node_responsibility")
    op.drop_table("node_responsibility")
    op.drop_table("agency")
