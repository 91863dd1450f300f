"""Where the writer's transactions run.

SQLite: one plain synchronous connection. A small batch (a chain's step, one CreateTask,
a flat tree's claims and completions) commits right on the event loop: with WAL and
`synchronous=NORMAL` a commit writes to the WAL without an fsync, about 0.1 ms, while
handing it to a thread and back cost more than that in wake-ups (a 3,000-step chain ran
at 2,000 steps/s through the thread, 3,900 inline). Large batches (a big tree, an
ExecuteTask of thousands of tasks) run on a dedicated thread, so the loop keeps serving
while SQLite writes. Never both at once: the writer commits one batch at a time.
Checkpoints (copying the WAL into the database file, with an fsync) are ours, not
SQLite's automatic ones, which would run inside a commit on the loop: they run on the
thread between two batches, paced by the WAL's pages (checkpoint_pace.py).

Other databases: a connection of the async SQLAlchemy engine (`db`) kept by the writer,
the batch running inside `run_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskgrove_server.storage.checkpoint_pace import CheckpointPace
from taskgrove_server.storage.database import BUSY_TIMEOUT_MS, sync_sqlite_engine
from taskgrove_server.storage.failures import is_disconnect, is_locked

log = logging.getLogger(__name__)

T = TypeVar("T")

INLINE_MAX_ITEMS = 300
"""Batches up to this many rows, changes and events commit on the event loop. A flat
tree's batch (32 claims and 32 completions, 128 items) took 1.1 ms there and 2.2-3.7 ms
through the thread (p50, 10,000 tasks): the thread waits for the GIL while the loop runs
the executors, then the loop for the thread's wake-up; flat 10k 8.2k -> 10.4k tasks/s."""


class Committer(Protocol):
    async def run(self, work: Callable[[Connection], T], size: int) -> T:
        """Run `work` in one transaction and commit it; `size`: how many rows, changes
        and events it writes."""
        ...

    async def close(self) -> None: ...


class AsyncCommitter:
    """One connection of its own, kept from batch to batch: taking one from the pool
    for each batch pinged it first (`pool_pre_ping`), a round trip a chain's one-task
    commits felt (1 of 8). A connection found dead before its transaction could commit
    is replaced and the batch tried again at once, as the ping would have done; one that
    dies during the commit is the writer's transient failure (its retry)."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None

    async def run(self, work: Callable[[Connection], T], size: int) -> T:
        try:
            return await self._attempt(work)
        except _GoneWhileIdle:
            return await self._attempt(work)  # on a new connection, once

    async def _attempt(self, work: Callable[[Connection], T]) -> T:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = await self._db.connect()
        conn = self._conn
        try:
            await conn.begin()
            result = await conn.run_sync(work)
        except BaseException as error:
            await self._discard_after(error)
            if reused and is_disconnect(error):
                raise _GoneWhileIdle from error  # nothing of the batch committed
            raise
        try:
            await conn.commit()
        except BaseException as error:
            await self._discard_after(error)
            raise
        return result

    async def _discard_after(self, error: BaseException) -> None:
        """Roll back what failed; a connection that is gone is dropped for a new one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not is_disconnect(error):
                await conn.rollback()
                self._conn = conn
                return
        except Exception:
            pass
        with contextlib.suppress(Exception):
            await conn.invalidate()
            await conn.close()

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()


class _GoneWhileIdle(Exception):
    """The kept connection died between two batches; the batch did not commit."""


class SqliteCommitter:
    """One connection, kept from batch to batch: checking one out of the pool and back
    for each commit, with the pool's reset, was a third of a CreateTask's commit (0.28
    -> 0.18 ms)."""

    def __init__(self, db: Engine) -> None:
        self._db = db
        self._conn: Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskgrove-writer")
        self._pace = CheckpointPace()
        self._copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskgrove-checkpoint")
        self._copier_conn: Connection | None = None
        self._copying: asyncio.Future[int | None] | None = None
        """The log's bulk being copied beside the writer (see `run`); its result: the
        frames the log held (None: the copy failed)."""
        self._checkpoint: asyncio.Future[int] | None = None
        """The finishing checkpoint, on the writer's thread; its result: the log's frames."""
        # On the loop a lock is never waited for (a locked database sends the batch to
        # the thread, which waits as long as needed); checkpoints are run below.
        event.listen(db, "connect", _writer_pragmas)

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.invalidated:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = self._conn = self._db.connect()
        return conn

    def _transact(self, work: Callable[[Connection], T], wait: bool) -> T:
        conn = self._connection()
        try:
            with conn.begin():
                if wait:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                try:
                    return work(conn)
                finally:
                    if wait:
                        conn.exec_driver_sql("PRAGMA busy_timeout=0")
        except BaseException:
            if conn.in_transaction() or conn.invalidated:
                # Not rolled back cleanly (e.g. the disk filled during the rollback):
                # the next batch starts on a fresh connection.
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.close()
            raise

    async def run(self, work: Callable[[Connection], T], size: int) -> T:
        # A checkpoint in two steps. Its bulk is copied on a connection of its own while
        # the writer goes on committing (again, for what was written meanwhile, while
        # that is much: see checkpoint_pace.py); that alone would never let the log start
        # over (there are always frames newer than the copy), so the writer's own
        # connection then copies what is left, between two batches, and the next commit
        # starts the log over. The batch waits for that second step only: the last frames
        # and the fsyncs (1.0-1.8 ms in a flat 10,000-task run), not the whole log (5-7 ms
        # for its 1,000 pages there). A copy slower than the writer (a slow disk) holds
        # the batches back once the log has grown by the target.
        loop = asyncio.get_running_loop()
        if self._copying is not None and (self._copying.done() or self._pace.overdue):
            found = await self._copying  # never raises: a failed copy is logged
            # After a failed copy another would fail too (a full disk): the writer's own
            # step copies the log, and says again whether it can.
            if found is not None and self._pace.copy_again(found):
                self._copying = loop.run_in_executor(self._copier, self._copy)
            else:
                self._copying = None
                self._checkpoint = loop.run_in_executor(self._thread, self._run_checkpoint)
        if self._checkpoint is not None:
            frames = await self._checkpoint  # one connection: the batch goes after it
            self._checkpoint = None
            self._pace.checkpointed(frames)
        result: T
        if size <= INLINE_MAX_ITEMS:
            try:
                result = self._transact(work, wait=False)
            except OperationalError as error:
                if not is_locked(error):
                    raise
                log.info("database locked by another connection: committing on the thread")
                result = await self._on_thread(work)
        else:
            result = await self._on_thread(work)
        self._pace.committed(size)
        if self._pace.due and self._copying is None and self._checkpoint is None:
            self._pace.copy_started()
            self._copying = loop.run_in_executor(self._copier, self._copy)
        return result

    def _copy(self) -> int | None:
        """Returns the frames the log held (None when the copy failed)."""
        try:
            if self._copier_conn is None or self._copier_conn.invalidated:
                self._copier_conn = self._db.connect()
            with self._copier_conn.begin():
                row = self._copier_conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
        except Exception as error:  # the writer's own checkpoint copies it all the same
            log.warning("WAL checkpoint (bulk) failed: %s", error)
            if self._copier_conn is not None:
                with contextlib.suppress(Exception):
                    self._copier_conn.close()
                self._copier_conn = None
            return None
        return int(row[1]) if row is not None else 0  # (busy, frames in the log, copied)

    def _run_checkpoint(self) -> int:
        """Returns the frames the log held (0 when the checkpoint failed)."""
        # PASSIVE: never waits for readers. It runs between two of the writer's batches,
        # so it can copy the whole log, and the next batch starts the log over. Copies
        # beside a busy writer alone never would: the WAL grew to 94,000 frames (370 MB)
        # in one 10,000-task run when tried.
        try:
            conn = self._connection()
            with conn.begin():
                row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
        except Exception as error:  # the WAL keeps every commit; the next one copies it
            log.warning("WAL checkpoint failed: %s", error)
            return 0
        return int(row[1]) if row is not None else 0  # (busy, frames in the log, copied)

    async def _on_thread(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transact, work, True)

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        loop = asyncio.get_running_loop()
        if self._copying is not None:
            await self._copying
        await loop.run_in_executor(self._copier, self._close_copier)
        self._copier.shutdown(wait=True)
        await loop.run_in_executor(self._thread, self._dispose)
        self._thread.shutdown(wait=True)

    def _close_copier(self) -> None:
        if self._copier_conn is not None:
            self._copier_conn.close()
            self._copier_conn = None

    def _dispose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._db.dispose()


def _writer_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def create_committer(url: str, db: AsyncEngine) -> Committer:
    sync_db = sync_sqlite_engine(url, pool_size=2)  # the writer's and the copier's
    return SqliteCommitter(sync_db) if sync_db is not None else AsyncCommitter(db)
