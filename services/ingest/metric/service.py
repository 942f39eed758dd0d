"""Importing metric points: validate, stage, upsert, audit, and mark affected assessments dirty.

The JSON batch and the CSV upload share this path. Points are validated one by one (a bad point
is reported with its index and reason, DHIS2-style). One statement finds duplicates, classifies
and applies the good ones: passed as arrays when they fit one batch (every JSON batch), or
COPYed into a staging table batch by batch for a large CSV load, so memory stays flat. Default
is all-or-nothing: any rejection stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.domain.access import policy
from services.domain.access.policy import Action
from services.domain.access.principal import Context, Principal
from services.domain.recompute.service import mark_readers_dirty
from services.domain.region import repository as regions
from services.ingest.metric import repository
from services.ingest.metric.catalogue import catalogue
from services.ingest.metric.schemas import MetricDefinitionOut, MetricPage, MetricPointOut
from services.ingest.metric.validation import Rejection, StagedRow, today_wib, validate_point
from services.kit.pagination import encode_cursor
from services.kit.queue import Queue
from services.scoring.engine import Framework

STAGING_BATCH = 5_000
MAX_REPORTED_REJECTIONS = 1_000


@dataclass
class ImportSummary:
    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    dry_run: bool = False
    atomic: bool = True
    stored: bool = False
    recomputes: int = 0

    @property
    def status(self) -> str:
        if self.dry_run:
            return "dry_run"
        if not self.rejected:
            return "ok"
        return "partial" if self.stored else "error"

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REPORTED_REJECTIONS:
            self.rejections.append(rejection)

    def public(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dry_run": self.dry_run,
            "atomic": self.atomic,
            "stored": self.stored,
            "counts": {
                "received": self.received,
                "created": self.created,
                "updated": self.updated,
                "unchanged": self.unchanged,
                "rejected": self.rejected,
            },
            "rejected": [rejection.public() for rejection in self.rejections],
            "rejected_truncated": self.rejected > len(self.rejections),
            "recomputes_requested": self.recomputes,
        }


def check_regions(principal: Principal, region_codes: Iterable[object]) -> None:
    """403 before anything is stored when a point is for a region the key may not write."""
    for code in region_codes:
        if isinstance(code, str):
            policy.require_region(principal, code, "write data", outcome="nothing was stored")


async def import_points(
    session: AsyncSession,
    context: Context,
    points: AsyncIterator[tuple[int, Any]],
    *,
    atomic: bool,
    dry_run: bool,
    queue: Queue | None,
    sent_regions: Collection[str] | None = None,
) -> ImportSummary:
    """Import ``points`` (index, raw point); the caller commits, or rolls back on error.
    ``sent_regions``, when the caller knows them up front (a JSON batch), are every region code
    the points name: only those are looked up, not the whole list.

    Regions are authorised point by point as they stream in: a foreign region raises
    :class:`Forbidden`, which rolls the whole request back. Every update is audited under the
    request's id, in the statement that applies it.
    """
    principal = context.principal
    policy.require(principal, Action.PUSH_METRICS)
    summary = ImportSummary(dry_run=dry_run, atomic=atomic)
    known_regions = (
        await regions.codes(session)
        if sent_regions is None
        else await regions.existing(session, list(sent_regions))
    )
    metrics = catalogue()
    today = today_wib()
    rows: list[StagedRow] = []
    staged = False  # whether rows went to the staging table (an import over one batch)
    allowed: set[object] = set()  # regions already authorised in this request
    async for index, raw in points:
        summary.received += 1
        region = raw.get("region") if isinstance(raw, dict) else None
        if isinstance(region, str) and region not in allowed:
            check_regions(principal, [region])
            allowed.add(region)
        checked = validate_point(raw, index, catalogue=metrics, regions=known_regions, today=today)
        if isinstance(checked, Rejection):
            summary.reject(checked)
            continue
        rows.append(checked)
        if len(rows) >= STAGING_BATCH:
            if not staged:
                await repository.open_staging(session)
                staged = True
            await repository.copy_to_staging(session, rows)
            rows.clear()
    if staged:
        await repository.copy_to_staging(session, rows)
    # Duplicates are found in the database, so memory stays flat however large the load.
    imported = await repository.import_points(
        session,
        None if staged else rows,
        store=not dry_run and not (atomic and summary.rejected),
        atomic=atomic,
        context=context,
    )
    for index, first in imported.duplicates:
        summary.reject(Rejection(index, "", f"duplicate of point {first} in this request"))
    summary.rejections.sort(key=lambda rejection: rejection.index)
    summary.created, summary.updated = imported.created, imported.updated
    summary.unchanged = imported.unchanged
    if not imported.stored:
        return summary
    summary.stored = True
    summary.recomputes = await mark_affected(session, imported.changes, queue)
    return summary


async def mark_affected(
    session: AsyncSession, changes: list[repository.Change], queue: Queue | None
) -> int:
    """Assessments of metric-driven frameworks whose region and year got new values."""
    changed: dict[str, set[tuple[str, int]]] = {}  # metric → (region, year) of its new values
    for change in changes:
        changed.setdefault(change.metric, set()).add((change.region_code, change.year))

    def reads(framework: Framework) -> set[tuple[str, int]]:
        return set().union(*(changed.get(key, ()) for key in framework.metric_keys))

    return await mark_readers_dirty(session, reads, queue)


async def page(
    session: AsyncSession,
    context: Context,
    *,
    region: str | None,
    metric: str | None,
    year: int | None,
    after_id: int | None,
    limit: int,
) -> MetricPage:
    """Stored points of the regions the caller reads, in id order, ``limit`` at a time, after
    the point ``after_id``."""
    policy.require(context.principal, Action.READ_METRICS)
    rows = await repository.list_points(
        session,
        regions=policy.metric_regions(context.principal),
        region=region,
        metric=metric,
        year=year,
        after_id=after_id,
        limit=limit + 1,
    )
    items = [
        MetricPointOut(
            id=row.id,
            region=row.region_code,
            metric=row.metric,
            period=row.period,
            dimensions=row.dimensions,
            value=format(row.value.normalize(), "f"),
            updated_at=row.updated_at.isoformat(),
        )
        for row in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return MetricPage(items=items, next_cursor=next_cursor)


def definitions() -> list[MetricDefinitionOut]:
    """The catalogue: every metric that may be pushed."""
    return [
        MetricDefinitionOut.model_validate(definition.public())
        for definition in catalogue().values()
    ]
