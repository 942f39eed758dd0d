"""SQL for metric points: a staging table filled by COPY, then one upsert that also audits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.metrics.validation import ValidPoint
from services.models import MetricPoint, Region

_STAGING_COLUMNS = (
    "ord",
    "region_code",
    "metric",
    "period",
    "period_start",
    "year",
    "dimensions",
    "dimension_key",
    "value",
)

_CREATE_STAGING = text(
    """
    CREATE TEMP TABLE IF NOT EXISTS metric_staging (
        ord int, region_code text, metric text, period text, period_start date, year int,
        dimensions jsonb, dimension_key text, value numeric
    ) ON COMMIT DROP
    """
)

# A point sent twice in one request: every later copy is rejected, naming the first.
_DUPLICATES = text(
    """
    WITH ranked AS (
        SELECT ord, first_value(ord) OVER same AS first, row_number() OVER same AS copy
        FROM metric_staging
        WINDOW same AS (PARTITION BY region_code, metric, period, dimension_key ORDER BY ord)
    ), removed AS (
        DELETE FROM metric_staging s USING ranked r WHERE s.ord = r.ord AND r.copy > 1
        RETURNING r.ord, r.first
    )
    SELECT ord, first FROM removed ORDER BY ord
    """
)

_CLASSIFY = text(
    """
    SELECT count(*) FILTER (WHERE m.id IS NULL) AS created,
           count(*) FILTER (WHERE m.id IS NOT NULL AND m.value <> s.value) AS updated,
           count(*) FILTER (WHERE m.value = s.value) AS unchanged
    FROM metric_staging s
    LEFT JOIN metric_point m USING (region_code, metric, period, dimension_key)
    """
)

# One statement: upsert from staging (a point with the same value is left alone), audit every
# update with its old and new value, and report which region, year and metric changed.
_APPLY = text(
    """
    WITH old AS (
        SELECT m.id, m.value FROM metric_point m
        JOIN metric_staging s USING (region_code, metric, period, dimension_key)
    ), up AS (
        INSERT INTO metric_point (region_code, metric, period, period_start, year, dimensions,
                                  dimension_key, value, source_key_id)
        SELECT region_code, metric, period, period_start, year, dimensions, dimension_key, value,
               :source_key_id
        FROM metric_staging
        ON CONFLICT (region_code, metric, period, dimension_key) DO UPDATE
            SET value = excluded.value, source_key_id = excluded.source_key_id,
                updated_at = now()
            WHERE metric_point.value <> excluded.value
        RETURNING id, region_code, metric, period, year, dimension_key, value,
                  (xmax = 0) AS inserted
    ), audited AS (
        INSERT INTO audit_event (actor_id, actor_name, role, action, entity, entity_id,
                                 before, after, request_id)
        SELECT :actor_id, :actor_name, :role, 'metric.update', 'metric_point',
               concat_ws('/', up.region_code, up.metric, up.period,
                         nullif(up.dimension_key, '')),
               jsonb_build_object('value', old.value::text),
               jsonb_build_object('value', up.value::text), :request_id
        FROM up JOIN old ON old.id = up.id
        WHERE NOT up.inserted
        RETURNING 1
    )
    SELECT DISTINCT region_code, year, metric FROM up  -- the audit CTE runs regardless
    """
)


@dataclass(frozen=True, slots=True)
class Change:
    region_code: str
    year: int
    metric: str


async def region_codes(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(Region.code))).all())


async def open_staging(session: AsyncSession) -> None:
    await session.execute(_CREATE_STAGING)
    await session.execute(text("TRUNCATE metric_staging"))


async def copy_to_staging(session: AsyncSession, points: Sequence[tuple[int, ValidPoint]]) -> None:
    """COPY a batch into the staging table (binary protocol, no per-row statements)."""
    if not points:
        return
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    records = [
        (
            index,
            p.region_code,
            p.metric,
            p.period,
            p.period_start,
            p.year,
            json.dumps(p.dimensions),
            p.dimension_key,
            p.value,
        )
        for index, p in points
    ]
    await driver.copy_records_to_table(
        "metric_staging", records=records, columns=list(_STAGING_COLUMNS)
    )


async def remove_duplicates(session: AsyncSession) -> list[tuple[int, int]]:
    """(index, index of the first copy) of every repeated point, removed from staging."""
    return [(row.ord, row.first) for row in await session.execute(_DUPLICATES)]


async def classify(session: AsyncSession) -> tuple[int, int, int]:
    row = (await session.execute(_CLASSIFY)).one()
    return int(row.created), int(row.updated), int(row.unchanged)


async def apply(
    session: AsyncSession,
    *,
    source_key_id: uuid.UUID | None,
    actor_name: str,
    role: str,
    request_id: str | None,
) -> list[Change]:
    rows = await session.execute(
        _APPLY,
        {
            "source_key_id": source_key_id,
            "actor_id": source_key_id,
            "actor_name": actor_name,
            "role": role,
            "request_id": request_id,
        },
    )
    return [Change(r.region_code, r.year, r.metric) for r in rows]


async def list_points(
    session: AsyncSession,
    *,
    region: str | None,
    metric: str | None,
    year: int | None,
    after_id: int | None,
    limit: int,
) -> Sequence[MetricPoint]:
    query = select(MetricPoint).order_by(MetricPoint.id).limit(limit)
    if region:
        query = query.where(MetricPoint.region_code == region)
    if metric:
        query = query.where(MetricPoint.metric == metric)
    if year:
        query = query.where(MetricPoint.year == year)
    if after_id is not None:
        query = query.where(MetricPoint.id > after_id)
    return (await session.scalars(query)).all()
