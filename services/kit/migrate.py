"""Run the Alembic migrations from code (CLI, app start, test harness) and check the head."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# The migrations ship inside the package (services/migrations: in the source tree a link to the
# top-level migrations/), so a source checkout and an installed wheel find them the same way;
# alembic.ini at the project root is only for the `alembic` command during development.
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision of the migration scripts, read once: the scripts do not change
    while the process runs, and parsing every one of them on each readiness probe would."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database to the newest revision; a database already there is left alone."""

    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        # One migrator at a time when several processes start together.
        await connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7220514)")
        await connection.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None before the first migration), read from
    ``alembic_version`` directly: an Alembic migration context would log two INFO lines each
    time, and readiness probes ask every few seconds."""
    async with engine.connect() as connection:
        if (await connection.scalar(text("SELECT to_regclass('alembic_version')"))) is None:
            return None
        versions = (await connection.scalars(text("SELECT version_num FROM alembic_version"))).all()
    # More than one row only while branches are unmerged: never equal to the single head.
    return ",".join(sorted(versions)) or None
