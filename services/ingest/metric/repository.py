"""SQL for metric points: a staging table filled by COPY, then one upsert that also audits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access.principal import Context
from services.domain.audit import repository as audit
from services.domain.audit.repository import insert_each
from services.ingest.metric.validation import STAGED_COLUMNS, StagedRow
from services.kit.db import driver_of
from services.models import MetricPoint

# Created once per database connection and emptied by every commit, so a request costs no
# catalogue churn (a temp table per transaction would create and drop one each time).
_CREATE_STAGING = text(
    """
    CREATE TEMP TABLE IF NOT EXISTS metric_staging (
        ord int, region_code text, metric text, period text, period_start date, year int,
        dimensions jsonb, dimension_key text, value numeric
    ) ON COMMIT DELETE ROWS
    """
)

# The whole import in one statement over the points (staged, or passed as arrays):
# - a point sent twice in one request: every later copy is a duplicate, naming the first;
# - each first copy is classified against what is stored (created / updated / unchanged);
# - if :store (and, for an atomic import, no duplicate), new and changed values are upserted,
#   every point stored audited (a create with its value, an update with its old and new);
# - it reports which region, year and metric changed, for the recomputes.
# Data-modifying CTEs see the snapshot from before the statement, so the classification is of
# the stored values the upsert replaces.
_IMPORT = """
    WITH ranked AS (
        SELECT s.*, first_value(ord) OVER same AS first, row_number() OVER same AS copy
        FROM {source}
        WINDOW same AS (PARTITION BY region_code, metric, period, dimension_key ORDER BY ord)
    ), duplicates AS (
        SELECT ord, first FROM ranked WHERE copy > 1
    ), matched AS (
        SELECT r.*, m.id AS old_id, m.value AS old_value
        FROM ranked r
        LEFT JOIN LATERAL (  -- a lookup by key per point (LIMIT keeps it one, see below)
            SELECT id, value FROM metric_point p
            WHERE (p.region_code, p.metric, p.period, p.dimension_key)
                = (r.region_code, r.metric, r.period, r.dimension_key)
            LIMIT 1
        ) m ON true
        WHERE r.copy = 1
    ), go AS (
        SELECT CAST(:store AS boolean)
               AND NOT (CAST(:atomic AS boolean) AND EXISTS (SELECT 1 FROM duplicates)) AS ok
    ), up AS (
        INSERT INTO metric_point (region_code, metric, period, period_start, year, dimensions,
                                  dimension_key, value, source_key_id)
        SELECT region_code, metric, period, period_start, year, dimensions, dimension_key, value,
               CAST(:source_key_id AS uuid)
        FROM matched
        WHERE (SELECT ok FROM go) AND (old_id IS NULL OR old_value <> value)
        ORDER BY ord  -- new points get ids in the order they were sent
        ON CONFLICT (region_code, metric, period, dimension_key) DO UPDATE
            SET value = excluded.value, source_key_id = excluded.source_key_id,
                updated_at = now()
            WHERE metric_point.value <> excluded.value
        RETURNING id, region_code, metric, period, year, dimension_key, value,
                  (xmax = 0) AS inserted
    ), audited AS ({audit}
    )
    SELECT
        (SELECT ok FROM go) AS stored,
        (SELECT count(*) FROM matched WHERE old_id IS NULL) AS created,
        (SELECT count(*) FROM matched WHERE old_value <> value) AS updated,
        (SELECT count(*) FROM matched WHERE old_value = value) AS unchanged,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(ord, first) ORDER BY ord), '[]')
         FROM duplicates) AS duplicates,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(region_code, year, metric)), '[]')
         FROM (SELECT DISTINCT region_code, year, metric FROM up) c) AS changes,
        (SELECT count(*) FROM audited) AS audited
    """
# Every point stored is audited. An update is a row of its own, with the value it replaced.
# Creates are recorded per series (region and metric) and request: one row whose `after` maps
# each new point (period, and dimensions if any) to its value. A push of 1,000 new points
# writes a handful of audit rows, not a thousand (a row per point halved the push rate).
_AUDIT = insert_each(
    """
    SELECT 'metric.update', 'metric_point',
           concat_ws('/', up.region_code, up.metric, up.period, nullif(up.dimension_key, '')),
           jsonb_build_object('value', matched.old_value::text),
           jsonb_build_object('value', up.value::text)
    FROM up JOIN matched ON matched.old_id = up.id
    WHERE NOT up.inserted
    UNION ALL
    SELECT 'metric.create', 'metric_series', concat_ws('/', up.region_code, up.metric), NULL,
           jsonb_build_object('created', jsonb_object_agg(
               concat_ws('/', up.period, nullif(up.dimension_key, '')), up.value::text))
    FROM up
    WHERE up.inserted
    GROUP BY up.region_code, up.metric
    """
)
_IMPORT_STAGED = text(_IMPORT.format(source="metric_staging s", audit=_AUDIT))
# An import that fits one staging batch (every JSON batch) skips the staging table.
_IMPORT_ARRAYS = text(
    _IMPORT.format(
        source="""unnest(CAST(:ord AS int[]), CAST(:region_code AS text[]),
                          CAST(:metric AS text[]), CAST(:period AS text[]),
                          CAST(:period_start AS date[]), CAST(:year AS int[]),
                          CAST(:dimensions AS jsonb[]), CAST(:dimension_key AS text[]),
                          CAST(CAST(:value AS text[]) AS numeric[]))
                   AS s(ord, region_code, metric, period, period_start, year, dimensions,
                        dimension_key, value)""",
        audit=_AUDIT,
    )
)


@dataclass(frozen=True, slots=True)
class Change:
    region_code: str
    year: int
    metric: str


async def open_staging(session: AsyncSession) -> None:
    """The connection's staging table, empty. A commit or rollback has emptied it already,
    unless an earlier import ran in this same transaction: then DELETE (cheap on a table this
    small, where TRUNCATE would rewrite the catalogue) clears what it left."""
    await session.execute(_CREATE_STAGING)
    await session.execute(text("DELETE FROM metric_staging"))


async def copy_to_staging(session: AsyncSession, rows: Sequence[StagedRow]) -> None:
    """COPY a batch into the staging table (binary protocol, no per-row statements)."""
    if not rows:
        return
    driver = await driver_of(await session.connection())
    await driver.copy_records_to_table("metric_staging", records=rows, columns=list(STAGED_COLUMNS))


@dataclass(frozen=True, slots=True)
class Imported:
    """What one import statement found and did."""

    stored: bool
    created: int
    updated: int
    unchanged: int
    duplicates: list[tuple[int, int]]  # (index, index of the first copy)
    changes: list[Change]


async def import_points(
    session: AsyncSession,
    rows: Sequence[StagedRow] | None,
    *,
    store: bool,
    atomic: bool,
    context: Context,
) -> Imported:
    """Classify the points and, with ``store``, apply them: one round trip. The points are
    ``rows``, or with None those in the staging table. Each update is audited in the same
    statement, as the caller of ``context`` under its request id."""
    columns: dict[str, Any] = {}
    if rows is not None:
        values = zip(*rows, strict=True) if rows else ([] for _ in STAGED_COLUMNS)
        columns = {name: list(column) for name, column in zip(STAGED_COLUMNS, values, strict=True)}
        # As text: asyncpg encodes Decimals to binary numeric at twice the cost of strings.
        columns["value"] = [str(value) for value in columns["value"]]
    # Points are looked up by key, never by reading all of metric_point. The statement's plan
    # is cached per connection, and one made while the table looked empty (fresh, or just
    # vacuumed) joined by reading it whole, for every batch, as it grew: each batch of 1,000
    # slower than the last, 35 ms → 1.5 s over 20 batches. A per-point lateral lookup, planned
    # with sequential scans off, can only be an index probe.
    await session.execute(text("SET LOCAL enable_seqscan = off"))
    row = (
        await session.execute(
            _IMPORT_STAGED if rows is None else _IMPORT_ARRAYS,
            {
                **columns,
                "store": store,
                "atomic": atomic,
                "source_key_id": context.principal.key_id,
                **audit.actor(context),
            },
        )
    ).one()
    await session.execute(text("SET LOCAL enable_seqscan TO DEFAULT"))
    return Imported(
        stored=bool(row.stored),
        created=int(row.created),
        updated=int(row.updated),
        unchanged=int(row.unchanged),
        duplicates=[(int(index), int(first)) for index, first in row.duplicates],
        changes=[Change(region, int(year), metric) for region, year, metric in row.changes],
    )


async def list_points(
    session: AsyncSession,
    *,
    regions: frozenset[str] | None,
    region: str | None,
    metric: str | None,
    year: int | None,
    after_id: int | None,
    limit: int,
) -> Sequence[MetricPoint]:
    """Points in id order; ``regions`` None: of every region."""
    query = select(MetricPoint).order_by(MetricPoint.id).limit(limit)
    if regions is not None:
        query = query.where(MetricPoint.region_code.in_(sorted(regions)))
    if region:
        query = query.where(MetricPoint.region_code == region)
    if metric:
        query = query.where(MetricPoint.metric == metric)
    if year:
        query = query.where(MetricPoint.year == year)
    if after_id is not None:
        query = query.where(MetricPoint.id > after_id)
    return (await session.scalars(query)).all()
