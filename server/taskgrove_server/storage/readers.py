"""Where reads run: each read is one function over a connection, run in one hop.

SQLite: plain synchronous connections on a few dedicated threads. Through aiosqlite every
statement, cursor and release is a hop of its own between the event loop and a thread;
a point read took about 1.1 ms that way and 0.2 ms as one hop (WAL lets these readers run
beside the writer's thread). A read asked as `small` (a task, its lineage: what every
CreateTask under a parent reads) runs on the event loop itself, on a connection of its
own, where SQLite answers in about 0.1 ms: the hop to a thread and back cost more than
that (create under a parent, p50 1.40 -> 1.23 ms). SQLite interrupts it once it has run
INLINE_BUDGET_S, and it runs again on a thread: the loop never waits long for a read
that turned out large. Other databases: the async SQLAlchemy engine, the function
running inside `run_sync` (asyncpg has no threads to hop to).

A read whose caller is cancelled (a client leaving) is never interrupted on SQLite: its
thread finishes it and the result is dropped. Through aiosqlite a cancel mid-statement
made SQLAlchemy terminate the connection, and aiosqlite's close could then wait for a
worker thread that had already stopped: the request's task never ended, nor did the
server's shutdown (seen in CI as a hung teardown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskgrove_server.storage.database import sync_sqlite_engine
from taskgrove_server.storage.failures import is_disconnect, is_interrupted

T = TypeVar("T")
Chunks = AsyncGenerator[Sequence[Sequence[Any]], None]
"""A streamed read: its rows, a chunk at a time."""

READ_THREADS = 3
"""Concurrent SQLite reads: enough for the reads of one request to run side by side."""
STREAMS = 64
"""SQLite connections beyond the threads' for streamed reads (watch snapshots), each held
while its reader takes the chunks: a slow watcher must not hold one the others need."""
INLINE_BUDGET_S = 0.0005
"""How long a small read may hold the event loop before it moves to a thread."""
_PROGRESS_STEPS = 100
"""SQLite virtual-machine steps between two looks at the clock (a task by id takes about
200). SQLite counts a prepared statement's steps across its runs, and sqlite3 reuses
prepared statements: a walk of many tiny queries (about 15 steps each) is cut short too."""


class Reader(Protocol):
    async def run(self, read: Callable[[Connection], T], *, small: bool = False) -> T:
        """Run `read` on a connection (no transaction is committed). `small`: a read of
        a few rows, which may run on the event loop (it must be free of side effects:
        it may be interrupted and run again)."""
        ...

    def stream(self, statement: Executable, chunk: int) -> Chunks:
        """The rows of one statement (one database snapshot), `chunk` at a time, read as
        they are asked for. Close it (`contextlib.aclosing`) when done early."""
        ...

    async def close(self) -> None: ...


class AsyncReader:
    """Reads in autocommit: under READ COMMITTED each statement sees its own snapshot
    anyway, and a transaction around a read cost a BEGIN and a ROLLBACK, two of its four
    round trips. A small read (what every create under a parent and every GetTask asks)
    runs on a connection kept for them, which spares the pool's ping, the fourth: a
    point read took 1.2 ms through the pool and 0.5 ms so. One small read at a time runs
    there; others, and small reads meanwhile, take a connection from the pool. A kept
    connection found dead (the server restarted) is replaced and the read runs again."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._kept: AsyncConnection | None = None
        self._kept_busy = False

    async def run(self, read: Callable[[Connection], T], *, small: bool = False) -> T:
        if small and not self._kept_busy:
            self._kept_busy = True
            try:
                return await self._run_kept(read)
            finally:
                self._kept_busy = False
        async with self._db.connect() as conn:
            return await (await _autocommit(conn)).run_sync(read)

    async def stream(self, statement: Executable, chunk: int) -> Chunks:
        async with self._db.connect() as conn:
            await conn.begin()  # a server-side cursor needs a transaction
            result = await conn.stream(statement)
            async for rows in result.partitions(chunk):
                yield rows

    async def _run_kept(self, read: Callable[[Connection], T]) -> T:
        reused = self._kept is not None
        if self._kept is None:
            self._kept = await _autocommit(await self._db.connect())
        try:
            return await self._kept.run_sync(read)
        except BaseException as error:
            # Whatever went wrong (a cancel mid-query too) the next read starts afresh.
            await self._drop_kept()
            if not (reused and is_disconnect(error)):
                raise
        self._kept = await _autocommit(await self._db.connect())
        return await self._kept.run_sync(read)  # once, on a new connection

    async def _drop_kept(self) -> None:
        conn, self._kept = self._kept, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        await self._drop_kept()


async def _autocommit(conn: AsyncConnection) -> AsyncConnection:
    return await conn.execution_options(isolation_level="AUTOCOMMIT")


class ThreadReader:
    def __init__(
        self, db: Engine, threads: int = READ_THREADS, inline_budget_s: float = INLINE_BUDGET_S
    ) -> None:
        self._db = db
        self._inline_budget_s = inline_budget_s
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="taskgrove-read")
        self._loop_conn: Connection | None = None
        """The event loop's own connection (never the pool's last one to wait for)."""

    def _read(self, read: Callable[[Connection], T]) -> T:
        with self._db.connect() as conn:
            return read(conn)

    async def run(self, read: Callable[[Connection], T], *, small: bool = False) -> T:
        if small:
            try:
                return self._read_inline(read)
            except Exception as error:
                if not is_interrupted(error):
                    raise
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._read, read)

    async def stream(self, statement: Executable, chunk: int) -> Chunks:
        # Each chunk is fetched by a thread; the statement stays open between chunks on
        # a connection of its own, so every chunk comes from the statement's snapshot.
        cursor = _StreamCursor(self._db, statement, chunk)
        step: Future[Sequence[Sequence[Any]]] | None = None
        try:
            while True:
                step = self._threads.submit(cursor.fetch)
                rows = await asyncio.wrap_future(step)
                if not rows:
                    return
                yield rows
        finally:
            # Never awaited (a cancelled stream ends at once): a fetch still running
            # closes the connection when it is done, on its thread; otherwise now.
            if step is None:
                cursor.close()
            else:
                step.add_done_callback(lambda _: cursor.close())

    def _read_inline(self, read: Callable[[Connection], T]) -> T:
        if self._loop_conn is None:
            self._loop_conn = self._db.connect()
        conn = self._loop_conn
        raw: Any = conn.connection.dbapi_connection
        deadline = time.monotonic() + self._inline_budget_s
        raw.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
        try:
            return read(conn)
        finally:
            raw.set_progress_handler(None, 0)
            conn.rollback()  # no snapshot held between reads (it would pin the WAL)

    async def close(self) -> None:
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._db.dispose)
        self._threads.shutdown(wait=True)


class _StreamCursor:
    """One statement's rows on a connection of its own, fetched a chunk at a time (by
    one thread at a time: the stream waits for each fetch before the next)."""

    def __init__(self, db: Engine, statement: Executable, chunk: int) -> None:
        self._db = db
        self._statement = statement
        self._chunk = chunk
        self._conn: Connection | None = None
        self._result: Any = None

    def fetch(self) -> Sequence[Sequence[Any]]:
        if self._conn is None:
            self._conn = self._db.connect()
            self._result = self._conn.execute(self._statement)
        rows: Sequence[Sequence[Any]] = self._result.fetchmany(self._chunk)
        return rows

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # rolls back: the snapshot is let go


def create_reader(url: str, db: AsyncEngine) -> Reader:
    # One connection per thread, the event loop's, and the streams'.
    sync_db = sync_sqlite_engine(url, pool_size=READ_THREADS + 1, max_overflow=STREAMS)
    return ThreadReader(sync_db) if sync_db is not None else AsyncReader(db)
