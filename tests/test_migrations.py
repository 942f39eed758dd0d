"""Data migrations, run on a database of their own: what an upgrade does to existing rows."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.migrate import alembic_config

pytestmark = pytest.mark.slow


async def upgrade(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def test_no_index_a_region_typed_survives_the_upgrade(scratch: AsyncEngine) -> None:
    await upgrade(scratch, "0009")
    typed, verified = uuid.uuid4(), uuid.uuid4()
    async with scratch.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO region (code, name, kind, province_code) VALUES "
            "('32', 'Jawa Barat', 'provinsi', NULL), ('32.71', 'Kota Bogor', 'kota', '32')"
        )
        for identifier, period in ((typed, 2024), (verified, 2023)):
            await connection.exec_driver_sql(
                "INSERT INTO assessment (id, region_code, framework_id, period, stage, state, "
                "input_revision) VALUES ($1, '32.71', 'spbe-2020', $2, 'final', 'published', 3)",
                (identifier, period),
            )
        # A region typed its own index; an assessor entered a published one.
        await connection.exec_driver_sql(
            "INSERT INTO assessment_input (assessment_id, node_id, self_value, verified_value) "
            "VALUES ($1, 'spbe', '\"5\"', NULL), ($2, 'spbe', NULL, '\"3.01\"'), "
            "($2, 'I1', '\"3\"', '\"3\"')",
            (typed, verified),
        )
    await upgrade(scratch, "head")
    async with scratch.connect() as connection:
        inputs = (
            await connection.exec_driver_sql(
                "SELECT assessment_id, node_id, self_value, official_value FROM assessment_input "
                "ORDER BY node_id, assessment_id"
            )
        ).all()
        requests = dict(
            (
                await connection.exec_driver_sql(
                    "SELECT assessment_id, revision FROM recompute_request"
                )
            ).all()
        )
    official = {(row[0], row[1]): row[3] for row in inputs}
    assert official[(typed, "spbe")] is None  # a region's own index never becomes official
    assert official[(verified, "spbe")] == "3.01"  # an assessor's becomes the official value
    assert official[(verified, "I1")] is None  # leaves keep their entered values
    # Both are recomputed at a new revision, so the typed index leaves every figure.
    assert requests == {typed: 4, verified: 4}


async def test_results_computed_before_the_indices_side_by_side_are_recomputed(
    scratch: AsyncEngine,
) -> None:
    """0011 adds the self-assessed and verified indices to stored results: a result computed
    before has neither, so its assessment is marked for recompute (one not computed yet is
    left alone: it is due anyway)."""
    await upgrade(scratch, "0010")
    computed, fresh = uuid.uuid4(), uuid.uuid4()
    async with scratch.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO region (code, name, kind, province_code) VALUES "
            "('32', 'Jawa Barat', 'provinsi', NULL), ('32.71', 'Kota Bogor', 'kota', '32')"
        )
        for identifier, period in ((computed, 2024), (fresh, 2023)):
            await connection.exec_driver_sql(
                "INSERT INTO assessment (id, region_code, framework_id, period, stage, state, "
                "input_revision) VALUES ($1, '32.71', 'spbe-2020', $2, 'final', 'published', 3)",
                (identifier, period),
            )
        await connection.exec_driver_sql(
            "INSERT INTO result_state (assessment_id, input_revision, framework_hash, "
            "index_value, predicate, complete, computed_at) "
            "VALUES ($1, 3, 'h', 3.72, 'Sangat Baik', true, now())",
            (computed,),
        )
    await upgrade(scratch, "head")
    async with scratch.connect() as connection:
        revisions = dict(
            (await connection.exec_driver_sql("SELECT id, input_revision FROM assessment")).all()
        )
        requests = dict(
            (
                await connection.exec_driver_sql(
                    "SELECT assessment_id, revision FROM recompute_request"
                )
            ).all()
        )
        state = (
            await connection.exec_driver_sql(
                "SELECT index_value, self_index_value, verified_index_value FROM result_state"
            )
        ).one()
        outputs = await connection.exec_driver_sql("SELECT count(*) FROM assessor_output")
    assert revisions == {computed: 4, fresh: 3}
    assert requests == {computed: 4}
    assert (str(state[0]), state[1], state[2]) == ("3.72", None, None)  # until recomputed
    assert outputs.scalar() == 0


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def test_key_assignments_survive_0013_and_people_can_be_assigned_after_it(
    scratch: AsyncEngine,
) -> None:
    """0013 gives assignments an id of their own so that a person can be assigned: an
    assignment of a key made before stays, and one row names a key or a person, never both."""
    await upgrade(scratch, "0012")
    assessment, key = uuid.uuid4(), uuid.uuid4()
    async with scratch.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO region (code, name, kind, province_code) VALUES "
            "('32', 'Jawa Barat', 'provinsi', NULL), ('32.71', 'Kota Bogor', 'kota', '32')"
        )
        await connection.exec_driver_sql(
            "INSERT INTO assessment (id, region_code, framework_id, period, stage, state, "
            "input_revision) VALUES ($1, '32.71', 'spbe-2020', 2024, 'final', 'in_review', 0)",
            (assessment,),
        )
        await connection.exec_driver_sql(
            "INSERT INTO api_key (id, name, role, regions, secret_hash, prefix) "
            "VALUES ($1, 'Asesor', 'assessor', '{}', 'h', 'cerdas_abcdef')",
            (key,),
        )
        await connection.exec_driver_sql(
            "INSERT INTO assessment_assignment (assessment_id, key_id) VALUES ($1, $2)",
            (assessment, key),
        )
    await upgrade(scratch, "0013")
    person = uuid.uuid4()
    async with scratch.begin() as connection:
        kept = (
            await connection.exec_driver_sql("SELECT key_id, person_id FROM assessment_assignment")
        ).all()
        assert kept == [(key, None)]
        await connection.exec_driver_sql(
            "INSERT INTO person (id, issuer, subject) VALUES ($1, 'https://sso.example', 's')",
            (person,),
        )
        await connection.exec_driver_sql(
            "INSERT INTO assessment_assignment (assessment_id, person_id) VALUES ($1, $2)",
            (assessment, person),
        )
    with pytest.raises(Exception, match="one_assessor"):
        async with scratch.begin() as connection:
            await connection.exec_driver_sql(
                "INSERT INTO assessment_assignment (assessment_id, key_id, person_id) "
                "VALUES ($1, $2, $3)",
                (assessment, key, person),
            )
    # Down again: the key's assignment stays; a person's has no place in the old table.
    await downgrade(scratch, "0012")
    async with scratch.connect() as connection:
        rows = (
            await connection.exec_driver_sql(
                "SELECT assessment_id, key_id FROM assessment_assignment"
            )
        ).all()
    assert rows == [(assessment, key)]
