"""The transactional outbox: an input change and its "recompute this" note commit together.

``mark_dirty`` bumps each assessment's input revision and upserts its outbox row in the caller's
transaction; the enqueue happens only after that transaction commits, and only for assessments
that had no recompute pending (a pending one will see the newer revision). If Redis is down the
enqueue is skipped with a warning and the sweeper picks the row up later.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db import after_commit
from services.kit.queue import Queue

RECOMPUTE_JOB = "recompute_assessment"

_MARK = text(
    """
    WITH locked AS (  -- lock in id order, so concurrent batches cannot deadlock
        SELECT id FROM assessment WHERE id = ANY(:ids) ORDER BY id FOR UPDATE
    ), bumped AS (
        UPDATE assessment SET input_revision = input_revision + 1
        FROM locked WHERE assessment.id = locked.id
        RETURNING assessment.id, assessment.input_revision
    )
    INSERT INTO recompute_request (assessment_id, revision, requested_at)
    SELECT id, input_revision, now() FROM bumped
    ON CONFLICT (assessment_id) DO UPDATE SET revision = excluded.revision
    RETURNING assessment_id, revision, (xmax = 0) AS fresh
    """
)


def recompute_job_id(assessment_id: uuid.UUID | str, revision: int) -> str:
    return f"recompute:{assessment_id}:{revision}"


async def mark_dirty(
    session: AsyncSession, assessment_ids: Iterable[uuid.UUID], queue: Queue | None
) -> int:
    """Record that these assessments must be recomputed; returns how many were marked."""
    ids = sorted(set(assessment_ids))
    if not ids:
        return 0
    rows = (await session.execute(_MARK, {"ids": ids})).all()
    fresh = [(row.assessment_id, row.revision) for row in rows if row.fresh]
    if queue is not None and fresh:

        async def enqueue() -> None:
            for assessment_id, revision in fresh:
                await queue.enqueue(
                    RECOMPUTE_JOB, str(assessment_id),
                    job_id=recompute_job_id(assessment_id, revision),
                )  # fmt: skip

        after_commit(session, enqueue)
    return len(rows)
