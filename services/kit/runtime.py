"""What a running process holds: settings, the database engine and the queue."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.kit.db import make_engine, make_sessionmaker
from services.kit.queue import Queue
from services.kit.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    queue: Queue

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("Runtime.open needs resolved DATABASE_URL and REDIS_URL")
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
        )
        queue = Queue.connect(settings.redis_url)  # lazily: a process starts while Redis is down
        return cls(settings, engine, make_sessionmaker(engine), queue)

    async def close(self) -> None:
        await self.queue.close()
        await self.engine.dispose()
