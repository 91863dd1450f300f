"""The PostgreSQL reader: small reads on one kept connection, every read in autocommit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.readers import AsyncReader

from tests.conftest import pg_dsn


@pytest.fixture
async def pg(pg_db_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    engine = open_database(pg_db_url)
    yield engine, pg_db_url
    await engine.dispose()


def backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


async def session_states(url: str, pids: list[int]) -> list[str]:
    observer = await asyncpg.connect(pg_dsn(url), timeout=10)
    try:
        rows = await observer.fetch(
            "SELECT state FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        )
    finally:
        await observer.close()
    return [row["state"] for row in rows]


async def test_small_reads_share_one_connection_that_holds_no_transaction(
    pg: tuple[AsyncEngine, str],
) -> None:
    reader = AsyncReader(pg[0])
    try:
        first = await reader.run(backend_pid, small=True)
        again = await reader.run(backend_pid, small=True)
        assert first == again  # kept: no pool checkout (and its ping) per read
        # Idle, not "idle in transaction": a read pins no snapshot between reads.
        assert await session_states(pg[1], [first]) == ["idle"]
        other = await reader.run(backend_pid)  # not small: from the pool, also autocommit
        assert await session_states(pg[1], [other]) == ["idle"]
    finally:
        await reader.close()


async def test_a_small_read_meanwhile_takes_a_pool_connection(
    pg: tuple[AsyncEngine, str],
) -> None:
    reader = AsyncReader(pg[0])

    def slow(conn: Connection) -> int:
        conn.execute(text("SELECT pg_sleep(0.3)"))
        return backend_pid(conn)

    try:
        slow_pid, quick_pid = await asyncio.gather(
            reader.run(slow, small=True), reader.run(backend_pid, small=True)
        )
        assert slow_pid != quick_pid
    finally:
        await reader.close()


async def test_a_kept_connection_that_died_is_replaced_unseen(
    pg: tuple[AsyncEngine, str],
) -> None:
    reader = AsyncReader(pg[0])
    try:
        first = await reader.run(backend_pid, small=True)
        killer = await asyncpg.connect(pg_dsn(pg[1]), timeout=10)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        replaced = await reader.run(backend_pid, small=True)  # no error: read again
        assert replaced != first
    finally:
        await reader.close()


async def test_a_small_read_cancelled_mid_query_leaves_the_reader_usable(
    pg: tuple[AsyncEngine, str],
) -> None:
    """A request cancelled while its read runs (the client went away) must not leave the
    kept connection busy with the abandoned query for the next read."""
    reader = AsyncReader(pg[0])

    def sleeping(conn: Connection) -> int:
        conn.execute(text("SELECT pg_sleep(5)"))
        return backend_pid(conn)

    try:
        first = await reader.run(backend_pid, small=True)
        read = asyncio.create_task(reader.run(sleeping, small=True))
        await asyncio.sleep(0.2)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        after = await asyncio.wait_for(reader.run(backend_pid, small=True), timeout=2)
        assert after != first  # a fresh connection, not the one left mid-query
    finally:
        await reader.close()
