"""Where the writer's transactions run.

SQLite: a plain synchronous connection on one dedicated thread, so a whole batch (begin,
every executemany, commit) is a single hop off the event loop; through aiosqlite each
statement is a hop of its own, and those hops, not SQLite, were most of a commit's time.
Other databases: the async SQLAlchemy engine (`db`), the batch running inside `run_sync`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.storage.database import sync_sqlite_engine

T = TypeVar("T")


class Committer(Protocol):
    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction and commit it."""
        ...

    async def close(self) -> None: ...


class AsyncCommitter:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self._db.begin() as conn:
            return await conn.run_sync(work)

    async def close(self) -> None:
        pass


class ThreadCommitter:
    def __init__(self, db: Engine) -> None:
        self._db = db
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskgrove-writer")

    def _transact(self, work: Callable[[Connection], T]) -> T:
        with self._db.begin() as conn:
            return work(conn)

    async def run(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transact, work)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._db.dispose)
        self._thread.shutdown(wait=True)


def create_committer(url: str, db: AsyncEngine) -> Committer:
    sync_db = sync_sqlite_engine(url, pool_size=1)
    return ThreadCommitter(sync_db) if sync_db is not None else AsyncCommitter(db)
