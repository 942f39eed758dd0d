"""Every change to ``api_key`` notifies ``api_key`` (after its commit), so that each process's
cache of principals (services.domain.access.cache) forgets what it kept, whoever made the
change: the API, ``cerdas keys``, or SQL by hand.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION api_key_notify() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_notify('api_key', ''); RETURN NULL; END $$"
    )
    # Statement-level: one notification per statement (Postgres folds repeats in a transaction).
    op.execute(
        "CREATE TRIGGER api_key_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_key "
        "FOR EACH STATEMENT EXECUTE FUNCTION api_key_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER api_key_notify ON api_key")
    op.execute("DROP FUNCTION api_key_notify()")
