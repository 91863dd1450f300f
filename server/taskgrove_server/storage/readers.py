"""Where reads run: each read is one function over a connection, run in one hop.

SQLite: plain synchronous connections on a few dedicated threads. Through aiosqlite every
statement, cursor and release is a hop of its own between the event loop and a thread;
a point read took about 1.1 ms that way and 0.2 ms as one hop (WAL lets these readers run
beside the writer's thread). Other databases: the async SQLAlchemy engine, the function
running inside `run_sync` (asyncpg has no threads to hop to).
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

READ_THREADS = 3
"""Concurrent SQLite reads: enough for the reads of one request to run side by side."""


class Reader(Protocol):
    async def run(self, read: Callable[[Connection], T]) -> T:
        """Run `read` on a connection (no transaction is committed)."""
        ...

    async def close(self) -> None: ...


class AsyncReader:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def run(self, read: Callable[[Connection], T]) -> T:
        async with self._db.connect() as conn:
            return await conn.run_sync(read)

    async def close(self) -> None:
        pass


class ThreadReader:
    def __init__(self, db: Engine, threads: int = READ_THREADS) -> None:
        self._db = db
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="taskgrove-read")

    def _read(self, read: Callable[[Connection], T]) -> T:
        with self._db.connect() as conn:
            return read(conn)

    async def run(self, read: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._read, read)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._db.dispose)
        self._threads.shutdown(wait=True)


def create_reader(url: str, db: AsyncEngine) -> Reader:
    sync_db = sync_sqlite_engine(url, pool_size=READ_THREADS)
    return ThreadReader(sync_db) if sync_db is not None else AsyncReader(db)
