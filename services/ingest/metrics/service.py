"""Importing metric points: validate, stage, upsert, audit, and mark affected assessments dirty.

The JSON batch and the CSV upload share this path. Points are validated one by one (a bad point
is reported with its index and reason, DHIS2-style). One statement finds duplicates, classifies
and applies the good ones: passed as arrays when they fit one batch (every JSON batch), or
COPYed into a staging table batch by batch for a large CSV load, so memory stays flat. Default
is all-or-nothing: any rejection stores nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.metrics import repository
from services.ingest.metrics.catalogue import catalogue
from services.ingest.metrics.validation import Rejection, StagedRow, today_wib, validate_point
from services.kit.auth import Principal
from services.kit.errors import Forbidden
from services.kit.outbox import mark_region_years_dirty
from services.kit.queue import Queue
from services.scoring.frameworks import initial_state, registry

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
        if isinstance(code, str) and not principal.may_write_region(code):
            raise Forbidden(
                f"The key {principal.name!r} ({principal.role}) may not write data for "
                f"region {code!r}; nothing was stored."
            )


async def import_points(
    session: AsyncSession,
    principal: Principal,
    points: AsyncIterator[tuple[int, Any]],
    *,
    atomic: bool,
    dry_run: bool,
    queue: Queue | None,
    request_id: str | None,
) -> ImportSummary:
    """Import ``points`` (index, raw point); the caller commits, or rolls back on error.

    Regions are authorised point by point as they stream in: a foreign region raises
    :class:`Forbidden`, which rolls the whole request back.
    """
    summary = ImportSummary(dry_run=dry_run, atomic=atomic)
    known_regions = await repository.region_codes(session)
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
        source_key_id=principal.key_id,
        actor_name=principal.name,
        role=principal.role,
        request_id=request_id,
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
    marked = 0
    for framework in registry().values():
        used = set(framework.metric_keys)
        region_years = {(c.region_code, c.year) for c in changes if c.metric in used}
        if region_years:
            marked += await mark_region_years_dirty(
                session, framework.id, region_years, state=initial_state(framework), queue=queue
            )
    return marked
