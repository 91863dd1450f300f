"""The SQLite writer's checkpoints against a real database file: the log is copied beside
the writer, finished between two batches, and started over, however busy the writer."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, event
from taskgrove_server.storage.checkpoint_pace import MAX_COPIES
from taskgrove_server.storage.committer import SqliteCommitter
from taskgrove_server.storage.database import sync_sqlite_engine

from tests.support.wal import LARGEST_WAL_BYTES, wal_index, wal_state

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

    def _copy(self) -> int | None:
        time.sleep(0.5)
        return super()._copy()


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


LAGGING_PAGES = 300
"""Pages the writer writes while the first copy of each checkpoint finishes, below: well
above what a catch-up copy lags by (10-20 pages without syncs, 105 at most in 240)."""


def _unsynced(db: Engine) -> Engine:
    """Its connections never sync. How far a catch-up copy lags is the time its syncs
    take, 0.5-20 ms on this VM (up to 230 pages written meanwhile): one that lagged by
    more than the first copy left the step more pages, not fewer (seen once in a local
    run of the suite). The copies and the step, not the disk, are under test."""
    event.listen(db, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    return db


async def _restarts_keeping_every_row(
    committer: SqliteCommitter, path: Path, restarts: int = 3
) -> int:
    """Commits back to back on the database at `path` until its log restarted `restarts`
    times (at least 3), which it did, staying under the bound, with every row stored;
    closes `committer`. Returns how often the log restarted."""
    try:
        largest, restarted, rows = await _back_to_back(
            committer, Path(f"{path}-wal"), 4_000, restarts=restarts
        )
        assert restarted >= max(3, restarts)
        assert largest < LARGEST_WAL_BYTES
        assert _count(path) == rows
        return restarted
    finally:
        await committer.close()


def _until_written(shm: Path, start: int, pages: int) -> None:
    """On the copier's thread: until the log holds `pages` frames past `start`."""
    deadline = time.monotonic() + 10  # bounded; the assertions then tell
    while wal_index(shm).frames < start + pages and time.monotonic() < deadline:
        time.sleep(0.001)


class _LaggingCopyCommitter(SqliteCommitter):
    """The first copy of each checkpoint ends only once the writer wrote LAGGING_PAGES
    more, none of which it copied (as a copy of the whole log ends under a busy writer);
    records, per checkpoint, the pages written during each copy and what the writer's own
    step found left to copy, read from the WAL index."""

    def __init__(self, db: Engine, path: Path) -> None:
        super().__init__(db)
        self._path = path
        self._shm = Path(f"{path}-shm")
        self._written_during: list[int] = []
        self.checkpoints: list[tuple[list[int], int]] = []

    def _copy(self) -> int | None:
        start = wal_index(self._shm).frames
        if self._written_during:  # a catch-up copy, as it is
            found = super()._copy()
        else:
            # A reader's snapshot stops the copy where the log was: what the writer writes
            # meanwhile stays to copy, and the log cannot start over under the count.
            with contextlib.closing(sqlite3.connect(self._path)) as reader:
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM blobs").fetchone()
                found = super()._copy()
                _until_written(self._shm, start, LAGGING_PAGES)
        self._written_during.append(wal_index(self._shm).frames - start)
        return found

    def _run_checkpoint(self) -> int:
        self.checkpoints.append((self._written_during, wal_index(self._shm).left))
        self._written_during = []
        return super()._run_checkpoint()


async def test_what_the_writer_wrote_during_a_copy_is_copied_beside_it_too(
    tmp_path: Path,
) -> None:
    """The writer's own step (which its next batch waits for) copies what the copies
    beside it left. When a copy ends behind by many pages, another copy beside the writer
    takes them first, so the step finds far fewer left."""
    path = tmp_path / "l.db"
    committer = _LaggingCopyCommitter(_unsynced(_database(path)), path)
    # A catch-up copy may copy all, the log then starting over before the writer's step
    # too: 6 restarts are at least 3 checkpoints.
    restarted = await _restarts_keeping_every_row(committer, path, restarts=6)
    finished = committer.checkpoints[:restarted]
    assert len(finished) >= 3
    for written_during, left in finished:
        first = written_during[0]
        assert first >= LAGGING_PAGES
        assert 2 <= len(written_during) <= MAX_COPIES
        assert left < first  # without the catch-up copy, at least `first`


class _FailingCopyCommitter(SqliteCommitter):
    """Each copy beside the writer fails once the writer wrote LAGGING_PAGES more (as a
    full disk refuses a copy's writes): its connection is closed under it, so it takes
    the copy's own failure path. Counts the copies and the writer's own steps."""

    def __init__(self, db: Engine, shm: Path) -> None:
        super().__init__(db)
        self._shm = shm
        self.copies = self.steps = 0

    def _copy(self) -> int | None:
        self.copies += 1
        _until_written(self._shm, wal_index(self._shm).frames, LAGGING_PAGES)
        conn = self._copier_conn = self._db.connect()
        conn.close()
        return super()._copy()

    def _run_checkpoint(self) -> int:
        self.steps += 1
        return super()._run_checkpoint()


async def test_a_failed_copy_leaves_the_log_to_the_writers_own_step(tmp_path: Path) -> None:
    """Another copy after a failed one would fail too: the writer's own step copies the
    log (and it still starts over, every row kept)."""
    path = tmp_path / "f.db"
    committer = _FailingCopyCommitter(_database(path), Path(f"{path}-shm"))
    await _restarts_keeping_every_row(committer, path)
    assert committer.copies == committer.steps  # one copy a checkpoint, however late
