"""Database engine and sessions.

The caller owns the transaction: a request's session is committed by :func:`session_dependency`
after the endpoint returns (rolled back if it raised); services and repositories only flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping on every checkout: it costs a round trip per request (it held read
        # throughput at 0.63 of a bare app instead of 0.72, `make bench` P4). A connection
        # that died with a database restart fails its one request and is then discarded;
        # recycling bounds how old a connection gets.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": "cerdas"}},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed when the endpoint succeeds.

    Work that must only happen after the commit (enqueueing jobs) is registered on
    ``session.info["after_commit"]`` and run here once the data is durable.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        await run_after_commit(session)


def after_commit(session: AsyncSession, callback: object) -> None:
    """Hold ``callback`` (an async callable) until the session's transaction commits."""
    session.info.setdefault("after_commit", []).append(callback)


async def run_after_commit(session: AsyncSession) -> None:
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        await callback()


DbSession = Annotated[AsyncSession, Depends(session_dependency)]


async def driver_of(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, for COPY and other driver-only calls
    (in the same transaction, if one is open)."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver
