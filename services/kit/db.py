"""Database engine and sessions.

The caller owns the transaction: a request's session is committed by :func:`session_dependency`
when the endpoint returns and before the response is sent (rolled back if it raised); services and
repositories only flush. A session takes a connection from the pool only at its first query, so
a request holds none while its body is still arriving.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)


def make_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 1.0) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A request that finds every connection busy fails fast (503 with Retry-After, see
        # kit.errors) instead of queueing for SQLAlchemy's default 30 s.
        pool_timeout=pool_timeout,
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
    """One session per request, committed when the endpoint succeeds, before the answer.

    The dependency is function-scoped (see :data:`DbSession`): its exit runs when the endpoint
    returns and before FastAPI sends the status line, so a 2xx always follows a commit, and a
    commit that fails reaches the client as an error. Work that must only happen after the commit
    (enqueueing jobs) is registered on ``session.info["after_commit"]`` and run here once the
    data is durable.
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
    """Run the callbacks held for the commit. The data is durable by now, so a callback that
    fails (Redis or the database gone a moment later) is logged and the others still run: the
    client must not hear an error for a write that was stored."""
    callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            log.exception("after-commit work failed; the committed write stands")


# scope="function": the exit code (the commit) runs before the response is sent. With the default
# request scope, FastAPI runs it after the answer has gone out, and a client could hear "stored"
# for data that a crash or a failed commit then loses.
DbSession = Annotated[AsyncSession, Depends(session_dependency, scope="function")]


async def driver_of(connection: AsyncConnection) -> Any:
    """The asyncpg connection under ``connection``, for COPY and other driver-only calls
    (in the same transaction, if one is open)."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver


async def own_connection(engine: AsyncEngine, application_name: str) -> asyncpg.Connection:
    """A driver connection of its own (never one of the pool's), with the engine's settings:
    for a LISTEN that lives as long as the process."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    for option in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        kwargs.pop(option, None)
    kwargs["server_settings"] = {"application_name": application_name}
    connection: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    return connection


async def ping(engine: AsyncEngine) -> None:
    """One round trip on a fresh connection: raises if the database does not answer."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
