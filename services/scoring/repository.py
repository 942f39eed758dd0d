"""SQL of the scoring shell: an assessment's inputs in, its result rows out."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.assessment.states import Value
from services.domain.recompute.repository import run_scope
from services.kit.db import driver_of
from services.models import (
    Assessment,
    AssessmentInput,
    AssessmentState,
    RecomputeRun,
    ResultNode,
    ResultState,
)

_RESULT_COLUMNS = (
    "assessment_id",
    "node_id",
    "parent_id",
    "value",
    "weight",
    "contribution",
    "predicate",
    "source",
    "detail",
    "input_revision",
    "computed_at",
)
# A result node as written: _RESULT_COLUMNS but computed_at (one per batch), detail as JSON.
ResultRow = tuple[
    uuid.UUID, str, str | None, Decimal | None, Decimal, Decimal | None, str | None, str, str, int
]
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


async def lock_assessments(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> list[Assessment]:
    """The assessments, locked in id order: no input change to them can commit until this
    transaction ends (every change takes the same lock before it touches the outbox)."""
    query = (
        select(Assessment)
        .where(Assessment.id.in_(assessment_ids))
        .order_by(Assessment.id)
        .with_for_update()
    )
    return list((await session.scalars(query)).all())


async def result_states(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ResultState]:
    rows = await session.scalars(
        select(ResultState).where(ResultState.assessment_id.in_(assessment_ids))
    )
    return {row.assessment_id: row for row in rows}


async def entered_values(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, dict[Value, Any]]]:
    """Per assessment: node id → its entered values (self, verified, official), those given;
    the same as the assessment repository's ``entered_values``, read on the driver. A national
    run reads half a million inputs: no SQLAlchemy row per input, and each distinct JSON text
    (the same few hundred scores, ``"3.45"``) decoded once."""
    found: dict[uuid.UUID, dict[str, dict[Value, Any]]] = {i: {} for i in assessment_ids}
    if not assessment_ids:
        return found
    driver = await driver_of(await session.connection())
    rows = await driver.fetch(
        """
        SELECT assessment_id, node_id,
               self_value::text, verified_value::text, official_value::text
        FROM assessment_input WHERE assessment_id = ANY($1::uuid[])
        """,
        list(assessment_ids),
    )
    decoded: dict[str, Any] = {}

    def value(text: str | None) -> Any:
        if text is None:
            return None
        known = decoded.get(text)
        if known is None:
            known = json.loads(text)
            if isinstance(known, list | dict):
                return known  # each its own, as a fresh decoding would give
            decoded[text] = known
        return known

    for assessment_id, node_id, self_text, verified_text, official_text in rows:
        given: dict[Value, Any] = {}
        if (self_value := value(self_text)) is not None:
            given[Value.SELF] = self_value
        if (verified_value := value(verified_text)) is not None:
            given[Value.VERIFIED] = verified_value
        if (official_value := value(official_text)) is not None:
            given[Value.OFFICIAL] = official_value
        found[assessment_id][node_id] = given
    return found


async def outside_sources(
    session: AsyncSession, assessment_ids: Sequence[uuid.UUID], node_ids: Sequence[str]
) -> dict[uuid.UUID, dict[str, tuple[str | None, date | None]]]:
    """Per assessment: for each of ``node_ids`` (leaves scored from an outside index) with a
    value, where that value was taken from and the figure's date."""
    if not assessment_ids or not node_ids:
        return {}
    rows = await session.execute(
        select(
            AssessmentInput.assessment_id,
            AssessmentInput.node_id,
            AssessmentInput.official_source,
            AssessmentInput.source_date,
        ).where(
            AssessmentInput.assessment_id.in_(assessment_ids),
            AssessmentInput.node_id.in_(node_ids),
            AssessmentInput.verified_value.is_not(None),
        )
    )
    found: dict[uuid.UUID, dict[str, tuple[str | None, date | None]]] = {}
    for assessment_id, node_id, reference, as_of in rows:
        found.setdefault(assessment_id, {})[node_id] = (reference, as_of)
    return found


async def latest_metrics(
    session: AsyncSession, region_years: set[tuple[str, int]], keys: Sequence[str]
) -> dict[tuple[str, int], dict[str, Decimal]]:
    """Per region and year: each metric's value in the latest period of that year (the
    region-wide series, without dimensions)."""
    if not keys or not region_years:
        return {}
    regions = [region for region, _ in region_years]
    years = [year for _, year in region_years]
    rows = await session.execute(
        text(
            """
            SELECT DISTINCT ON (m.region_code, m.year, m.metric)
                   m.region_code, m.year, m.metric, m.value
            FROM metric_point m
            JOIN unnest(CAST(:regions AS text[]), CAST(:years AS int[])) AS t(region, year)
              ON t.region = m.region_code AND t.year = m.year
            WHERE m.metric = ANY(:keys) AND m.dimension_key = ''
            ORDER BY m.region_code, m.year, m.metric, m.period_start DESC
            """
        ),
        {"regions": regions, "years": years, "keys": list(keys)},
    )
    found: dict[tuple[str, int], dict[str, Decimal]] = {}
    for row in rows:
        found.setdefault((row.region_code, row.year), {})[row.metric] = row.value
    return found


async def linked_values(
    session: AsyncSession,
    framework_id: str,
    node_id: str,
    keys: set[tuple[str, int, str]],
) -> dict[tuple[str, int, str], Decimal]:
    """The value of ``node_id`` on ``framework_id`` for each (region, period, stage), once that
    assessment is published (a linked view never shows figures still under review)."""
    if not keys:
        return {}
    rows = await session.execute(
        select(Assessment.region_code, Assessment.period, Assessment.stage, ResultNode.value)
        .join(ResultNode, ResultNode.assessment_id == Assessment.id)
        .where(
            Assessment.framework_id == framework_id,
            Assessment.state == AssessmentState.PUBLISHED,
            # A linked view reads the region's official figure, never an agency's internal one.
            Assessment.agency_id.is_(None),
            Assessment.region_code.in_({region for region, _, _ in keys}),
            ResultNode.node_id == node_id,
            ResultNode.value.is_not(None),
        )
    )
    return {
        (region, period, stage): value
        for region, period, stage, value in rows
        if (region, period, stage) in keys and value is not None
    }


async def source_assessments(
    session: AsyncSession, framework_id: str, keys: set[tuple[str, int, str]]
) -> dict[tuple[str, int, str], tuple[uuid.UUID, AssessmentState]]:
    """The assessments of ``framework_id`` for each (region, period, stage), whatever their
    state: why a linked view has no value from one."""
    if not keys:
        return {}
    rows = await session.execute(
        select(
            Assessment.region_code,
            Assessment.period,
            Assessment.stage,
            Assessment.id,
            Assessment.state,
        ).where(
            Assessment.framework_id == framework_id,
            Assessment.agency_id.is_(None),
            Assessment.region_code.in_({region for region, _, _ in keys}),
        )
    )
    return {
        (region, period, stage): (identifier, state)
        for region, period, stage, identifier, state in rows
        if (region, period, stage) in keys
    }


async def replace_results(
    session: AsyncSession,
    assessment_ids: Sequence[uuid.UUID],
    rows: ResultText,
    states: list[dict[str, Any]],
) -> None:
    """Replace whole result sets: nodes that no longer exist are gone, nothing is stale."""
    await session.execute(delete(ResultNode).where(ResultNode.assessment_id.in_(assessment_ids)))
    if rows.lines:
        # COPY in text format: a national run writes ~30 rows per assessment, hundreds of
        # thousands in all, and text costs a fraction of asyncpg's binary encoding of Decimals.
        driver = await driver_of(await session.connection())
        await driver.copy_to_table(
            "result_node",
            source=io.BytesIO(rows.text()),
            columns=list(_RESULT_COLUMNS),
            format="text",
        )
    if states:
        statement = pg_insert(ResultState)
        columns = (
            "input_revision",
            "framework_hash",
            "index_value",
            "predicate",
            "self_index_value",
            "self_predicate",
            "verified_index_value",
            "verified_predicate",
            "complete",
            "computed_at",
            "error",
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ResultState.assessment_id],
                set_={column: statement.excluded[column] for column in columns},
            ),
            states,
        )


class ResultText:
    """A batch's result rows as COPY text (tab-separated, \\N for NULL, backslash escapes),
    a line added per row as the results are built: the texts that repeat from one assessment to
    the next (node ids, parents, predicates, details) are escaped once per batch."""

    def __init__(self, computed_at: datetime) -> None:
        self.moment = computed_at.isoformat()
        self.lines: list[str] = []
        self._escaped: dict[str | None, str] = {}

    def field(self, value: str | None) -> str:
        """``value`` as a COPY text field."""
        found = self._escaped.get(value)
        if found is None:
            found = self._escaped[value] = _copy_field(value)
        return found

    def add(self, row: ResultRow) -> None:
        """One row (``computed_at`` is the batch's)."""
        (
            identifier,
            node,
            parent,
            value,
            weight,
            contribution,
            predicate,
            source,
            detail,
            revision,
        ) = row
        field = self.field
        self.lines.append(
            f"{identifier}\t{field(node)}\t{field(parent)}\t{copy_number(value)}\t"
            f"{copy_number(weight)}\t{copy_number(contribution)}\t{field(predicate)}\t"
            f"{source}\t{field(detail)}\t{revision}\t{self.moment}\n"
        )

    def text(self) -> bytes:
        return "".join(self.lines).encode()


def _copy_field(value: str | None) -> str:
    """A text field in COPY text format: \\N for NULL, backslash escapes."""
    return "\\N" if value is None else value.translate(_ESCAPES)


def copy_number(value: Decimal | None) -> str:
    """A number in COPY text format: \\N for NULL, plain notation, every digit kept."""
    return "\\N" if value is None else format(value, "f")


async def clear_requests(session: AsyncSession, computed: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Outbox rows satisfied by results at these revisions (newer ones stay)."""
    if not computed:
        return
    await session.execute(
        text(
            """
            DELETE FROM recompute_request r
            USING unnest(CAST(:ids AS uuid[]), CAST(:revisions AS bigint[])) AS t(id, revision)
            WHERE r.assessment_id = t.id AND r.revision <= t.revision
            """
        ),
        {
            "ids": [identifier for identifier, _ in computed],
            "revisions": [revision for _, revision in computed],
        },
    )


async def stale_requests(
    session: AsyncSession, older_than: datetime, limit: int
) -> list[tuple[uuid.UUID, int, datetime]]:
    """Recompute requests waiting since before ``older_than``: (assessment, revision, since)."""
    rows = await session.execute(
        text(
            """
            SELECT assessment_id, revision, requested_at FROM recompute_request
            WHERE requested_at < :older_than ORDER BY requested_at LIMIT :limit
            """
        ),
        {"older_than": older_than, "limit": limit},
    )
    return [(row.assessment_id, row.revision, row.requested_at) for row in rows]


async def assessment_ids_after(
    session: AsyncSession,
    *,
    framework_id: str | None,
    period: int | None,
    region_code: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[uuid.UUID]:
    """A page of matching assessment ids, in id order (keyset), for batched runs."""
    query = select(Assessment.id).order_by(Assessment.id).limit(limit)
    query = query.where(*run_scope(framework_id, period, region_code))
    if after is not None:
        query = query.where(Assessment.id > after)
    return list((await session.scalars(query)).all())


async def stalled_runs(session: AsyncSession, older_than: datetime) -> list[RecomputeRun]:
    """Runs not finished and not advanced lately: their next step was lost (Redis, a crash)."""
    return list(
        (
            await session.scalars(
                select(RecomputeRun).where(
                    RecomputeRun.state.in_(("queued", "running")),
                    RecomputeRun.updated_at < older_than,
                )
            )
        ).all()
    )


async def lock_run(session: AsyncSession, run_id: uuid.UUID) -> RecomputeRun | None:
    """The run locked for one step; None if it is gone or another step holds it right now."""
    found: RecomputeRun | None = await session.scalar(
        select(RecomputeRun)
        .where(RecomputeRun.id == run_id)
        .with_for_update(skip_locked=True)
        # A step locks its run again after each batch: what another step may have written in
        # between wins over the copy in this session.
        .execution_options(populate_existing=True)
    )
    return found
