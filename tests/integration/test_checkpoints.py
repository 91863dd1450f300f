"""The SQLite writer's checkpoints against a real database file: the log is copied beside
the writer, finished between two batches, and started over, however busy the writer."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from sqlalchemy import Connection
from taskgrove_server.storage.committer import SqliteCommitter
from taskgrove_server.storage.database import sync_sqlite_engine

from tests.support.wal import wal_state

ROW_BYTES = 6_000
"""Two pages of 4 KiB a row."""


def _insert(conn: Connection) -> None:
    conn.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(?))", (ROW_BYTES,))


async def test_the_log_starts_over_under_a_writer_that_never_pauses(tmp_path: Path) -> None:
    """3,000 commits back to back, no pause between them in which a copy beside the
    writer could catch up: the log still restarts again and again, and stays near the
    target (1,000 pages, 4 MB) instead of holding all 3,000 commits (about 25 MB)."""
    path = tmp_path / "c.db"
    with contextlib.closing(sqlite3.connect(path)) as setup:
        setup.execute("CREATE TABLE blobs (data BLOB)")
    engine = sync_sqlite_engine(f"sqlite+aiosqlite:///{path}", pool_size=2)
    assert engine is not None
    committer = SqliteCommitter(engine)
    wal = Path(f"{path}-wal")
    try:
        await committer.run(_insert, 1)
        _, first_sequence = wal_state(wal)
        largest = 0
        for _ in range(3_000):
            await committer.run(_insert, 1)
            await asyncio.sleep(0)  # the loop's turn, as between a writer's batches
            largest = max(largest, wal_state(wal)[0])
        _, sequence = wal_state(wal)
        assert sequence - first_sequence >= 3  # restarted, several times
        assert largest < 3 * 1000 * 4120
        # A connection of its own: the pool's two are the committer's.
        with contextlib.closing(sqlite3.connect(path)) as reader:
            assert reader.execute("SELECT count(*) FROM blobs").fetchone() == (3_001,)
    finally:
        await committer.close()
