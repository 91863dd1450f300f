"""Streamed reads on SQLite (watch snapshots): one statement read a chunk at a time by
the reader's threads, its connection given back however the stream ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from taskgrove_server.storage.database import sync_sqlite_engine
from taskgrove_server.storage.readers import ThreadReader
from taskgrove_server.testing import sqlite_url

from tests.support.waiting import until

ROWS = 10
SLOW = text(  # counts to 6 million: about a second, to be cancelled while it runs
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000000) "
    "SELECT count(*) FROM c"
)


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[tuple[ThreadReader, Engine]]:
    db = sync_sqlite_engine(sqlite_url(tmp_path / "streams.db"), pool_size=2, max_overflow=4)
    assert db is not None
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE numbers (n INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO numbers VALUES " + ",".join(f"({n})" for n in range(ROWS))))
    instance = ThreadReader(db)
    yield instance, db
    await instance.close()


def checked_out(db: Engine) -> int:
    return db.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


async def test_a_stream_reads_its_statement_in_chunks_from_one_snapshot(
    reader: tuple[ThreadReader, Engine],
) -> None:
    instance, db = reader
    chunks = []
    async with contextlib.aclosing(
        instance.stream(text("SELECT n FROM numbers ORDER BY n"), 4)
    ) as stream:
        async for rows in stream:
            chunks.append([row[0] for row in rows])
            if len(chunks) == 1:  # committed between two chunks: not in this statement's
                with db.begin() as conn:
                    conn.execute(text("INSERT INTO numbers VALUES (100), (101)"))
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert checked_out(db) == 0


async def test_a_stream_left_after_a_chunk_gives_its_connection_back(
    reader: tuple[ThreadReader, Engine],
) -> None:
    instance, db = reader
    async with contextlib.aclosing(instance.stream(text("SELECT n FROM numbers"), 3)) as stream:
        first = await anext(stream)
        assert len(first) == 3
        assert checked_out(db) == 1  # held between chunks: the statement is still open
    assert checked_out(db) == 0


async def test_a_stream_cancelled_while_its_fetch_runs_ends_at_once_and_gives_back(
    reader: tuple[ThreadReader, Engine],
) -> None:
    instance, db = reader
    started = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(instance.stream(SLOW, 1)) as stream:
            started.set()
            async for _ in stream:
                pass

    consumer = asyncio.ensure_future(consume())
    await started.wait()
    await until(lambda: checked_out(db) == 1, poll_s=0.001)  # the statement runs on its thread
    assert checked_out(db) == 1
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert checked_out(db) == 1  # ended with the cancel: the statement still runs
    await until(lambda: checked_out(db) == 0)  # the fetch finishing on its thread gives it back
    assert checked_out(db) == 0
    assert await instance.run(lambda conn: conn.scalar(text("SELECT count(*) FROM numbers")))


async def test_a_stream_the_database_refuses_raises_and_gives_its_connection_back(
    reader: tuple[ThreadReader, Engine],
) -> None:
    instance, db = reader
    with pytest.raises(OperationalError, match="no such table"):
        async with contextlib.aclosing(instance.stream(text("SELECT * FROM missing"), 3)) as stream:
            await anext(stream)
    await until(lambda: checked_out(db) == 0)
    assert checked_out(db) == 0
    assert await instance.run(lambda conn: conn.scalar(text("SELECT count(*) FROM numbers")))
