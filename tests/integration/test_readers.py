"""SQLite reads on a real file: a small read runs on the event loop, and one that turns out
large is cut short there and runs again on a reader thread, with the same answer."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from taskgrove_server.storage.database import sync_sqlite_engine
from taskgrove_server.storage.readers import READ_THREADS, ThreadReader
from taskgrove_server.testing import sqlite_url

ROWS = 2_000
BUDGET_S = 0.02
"""The budget in these tests: 40x the server's, so that a short read preempted on a busy
machine (a CI run saw `count_to(5)` move to a thread under the 0.5 ms budget) still
stays on the loop, while the long reads below run for hundreds of milliseconds."""


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[ThreadReader]:
    path = tmp_path / "reads.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(ROWS)])
    db = sync_sqlite_engine(sqlite_url(path), pool_size=READ_THREADS + 1)
    assert db is not None
    reader = ThreadReader(db, inline_budget_s=BUDGET_S)
    yield reader
    await reader.close()


class Recorded:
    """A read that notes the thread of every attempt."""

    def __init__(self, read: Callable[[Connection], int]) -> None:
        self._read = read
        self.threads: list[str] = []

    def __call__(self, conn: Connection) -> int:
        self.threads.append(threading.current_thread().name)
        return self._read(conn)


def count_to(n: int) -> Callable[[Connection], int]:
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "SELECT count(*) FROM c"
    )
    return lambda conn: int(conn.exec_driver_sql(sql, (n,)).scalar_one())


def many_point_reads(conn: Connection) -> int:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    found = 0
    for _ in range(20):  # each statement alone is far below the budget
        for i in range(ROWS):
            found += len(raw.execute("SELECT x FROM t WHERE x = ?", (i,)).fetchall())
    return found


LOOP = threading.current_thread().name


async def test_small_read_runs_on_the_event_loop(reader: ThreadReader) -> None:
    # The loop's connection is opened and its schema read by a first read.
    await reader.run(count_to(1), small=True)
    read = Recorded(count_to(10))
    assert await reader.run(read, small=True) == 10
    assert read.threads == [LOOP]


async def test_small_read_that_runs_long_runs_again_on_a_thread(reader: ThreadReader) -> None:
    read = Recorded(count_to(3_000_000))
    assert await reader.run(read, small=True) == 3_000_000
    assert read.threads[0] == LOOP
    assert len(read.threads) == 2
    assert read.threads[1].startswith("taskgrove-read")
    # The loop's connection is fine afterwards: the next small read stays on the loop.
    again = Recorded(count_to(5))
    assert await reader.run(again, small=True) == 5
    assert again.threads == [LOOP]


async def test_many_tiny_statements_are_cut_short_too(reader: ThreadReader) -> None:
    read = Recorded(many_point_reads)
    assert await reader.run(read, small=True) == 20 * ROWS
    assert [name.startswith("taskgrove-read") for name in read.threads] == [False, True]


async def test_a_read_not_asked_small_runs_on_a_thread(reader: ThreadReader) -> None:
    read = Recorded(count_to(10))
    assert await reader.run(read) == 10
    assert len(read.threads) == 1
    assert read.threads[0].startswith("taskgrove-read")


async def test_a_failing_small_read_fails_once(reader: ThreadReader) -> None:
    read = Recorded(lambda conn: int(conn.exec_driver_sql("SELECT * FROM missing").scalar_one()))
    with pytest.raises(OperationalError, match="no such table"):
        await reader.run(read, small=True)
    assert read.threads == [LOOP]


async def test_a_small_read_sees_what_was_committed_since_the_last(
    reader: ThreadReader, tmp_path: Path
) -> None:
    def count(conn: Connection) -> int:
        return int(conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one())

    assert await reader.run(count, small=True) == ROWS
    with sqlite3.connect(tmp_path / "reads.db") as other:
        other.execute("INSERT INTO t VALUES (?)", (ROWS,))
    assert await reader.run(count, small=True) == ROWS + 1
