"""The SQLite writer's checkpoints against a real database file: the log is copied beside
the writer, finished between two batches, and started over, however busy the writer."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine
from taskgrove_server.storage.committer import SqliteCommitter
from taskgrove_server.storage.database import sync_sqlite_engine

from tests.support.wal import LARGEST_WAL_BYTES, wal_state

ROW_BYTES = 6_000
"""Two pages of 4 KiB a row."""


def _insert(conn: Connection) -> None:
    conn.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(?))", (ROW_BYTES,))


def _database(path: Path) -> Engine:
    with contextlib.closing(sqlite3.connect(path)) as setup:
        setup.execute("CREATE TABLE blobs (data BLOB)")
    engine = sync_sqlite_engine(f"sqlite+aiosqlite:///{path}", pool_size=2)
    assert engine is not None
    return engine


def _count(path: Path) -> int:
    # A connection of its own: the pool's two are the committer's.
    with contextlib.closing(sqlite3.connect(path)) as reader:
        return int(reader.execute("SELECT count(*) FROM blobs").fetchone()[0])


async def _back_to_back(
    committer: SqliteCommitter, wal: Path, commits: int, restarts: int | None = None
) -> tuple[int, int, int]:
    """Commit one row, then up to `commits` more, the loop getting a turn between two
    as between a writer's batches, stopping once the log restarted `restarts` times;
    returns the largest size the log reached, how often it restarted, and the rows."""
    await committer.run(_insert, 1)
    _, first_sequence = wal_state(wal)
    largest = restarted = 0
    rows = 1
    while rows <= commits:
        await committer.run(_insert, 1)
        rows += 1
        await asyncio.sleep(0)
        size, sequence = wal_state(wal)
        largest, restarted = max(largest, size), sequence - first_sequence
        if restarts is not None and restarted >= restarts:
            break
    return largest, restarted, rows


async def test_the_log_starts_over_under_a_writer_that_never_pauses(tmp_path: Path) -> None:
    """3,000 commits back to back, no pause between them in which a copy beside the
    writer could catch up: the log still restarts again and again, and stays near the
    target (1,000 pages, 4 MB) instead of holding all 3,000 commits (about 25 MB)."""
    path = tmp_path / "c.db"
    committer = SqliteCommitter(_database(path))
    try:
        largest, restarted, rows = await _back_to_back(committer, Path(f"{path}-wal"), 3_000)
        assert restarted >= 3
        assert largest < LARGEST_WAL_BYTES
        assert rows == 3_001
        assert _count(path) == 3_001
    finally:
        await committer.close()


class _SlowDiskCommitter(SqliteCommitter):
    """Each copy beside the writer takes half a second longer, as on a slow disk: the
    only thing not real here is that disk."""

    def _copy(self) -> None:
        time.sleep(0.5)
        super()._copy()


async def test_a_copy_slower_than_the_writer_holds_its_batches_back(tmp_path: Path) -> None:
    """Back-to-back commits write thousands of pages in the half second a copy takes;
    once the log has grown by the target again during the copy, the batches wait for
    it, and the log stays near the target."""
    path = tmp_path / "s.db"
    committer = _SlowDiskCommitter(_database(path))
    try:
        # Bounded: 4,000 commits of two pages are about four checkpoints' worth.
        largest, restarted, rows = await _back_to_back(
            committer, Path(f"{path}-wal"), 4_000, restarts=2
        )
        assert largest < LARGEST_WAL_BYTES
        assert restarted >= 2
        assert _count(path) == rows  # every row held back was committed, none lost
    finally:
        await committer.close()
