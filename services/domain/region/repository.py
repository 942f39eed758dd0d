"""SQL for the Kemendagri regions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import Region


async def get(session: AsyncSession, code: str) -> Region | None:
    return await session.get(Region, code)


async def page(
    session: AsyncSession,
    *,
    kind: str | None,
    province: str | None,
    after: str | None,
    limit: int,
) -> Sequence[Region]:
    query = select(Region).order_by(Region.code).limit(limit)
    if kind is not None:
        query = query.where(Region.kind == kind)
    if province is not None:
        query = query.where(Region.province_code == province)
    if after is not None:
        query = query.where(Region.code > after)
    return (await session.scalars(query)).all()


_EXISTING = text("SELECT code FROM region WHERE code = ANY(CAST(:codes AS text[]))")


async def codes(session: AsyncSession) -> set[str]:
    """Every region code (a few hundred): for validating points in bulk. A Core query (of
    the table's column), which reads them back at half the ORM's cost."""
    return set((await session.scalars(select(Region.__table__.c.code))).all())


async def existing(session: AsyncSession, wanted: Sequence[str]) -> set[str]:
    """Which of ``wanted`` are region codes: a Core query with the codes as one array, so it
    is one prepared statement however many are asked about."""
    found = await session.scalars(_EXISTING, {"codes": list(wanted)})
    return set(found.all())


async def upsert(session: AsyncSession, rows: Sequence[dict[str, str | None]]) -> None:
    """Insert these regions, updating those whose name, kind or province changed."""
    statement = insert(Region).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=[Region.code],
        set_={
            "name": statement.excluded.name,
            "kind": statement.excluded.kind,
            "province_code": statement.excluded.province_code,
        },
        where=(Region.name != statement.excluded.name)
        | (Region.kind != statement.excluded.kind)
        | (Region.province_code.is_distinct_from(statement.excluded.province_code)),
    )
    await session.execute(statement)
