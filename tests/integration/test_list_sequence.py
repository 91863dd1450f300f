"""ListTasksResponse.sequence: where a watch of the listed tasks starts so that it misses
no change after the page was read (the runs page of the console stays live from it), also
after a restart, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from taskgrove import AsyncClient, TaskEvent
from taskgrove.v1 import task_service_pb2

if TYPE_CHECKING:
    from tests.conftest import ServerFactory


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """A SQLite file, then a fresh PostgreSQL database (skipped without one)."""
    url: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_db_url")
    return url


async def listed_sequence(client: AsyncClient) -> int:
    reply = await client.stub.ListTasks(task_service_pb2.ListTasksRequest(roots_only=True))
    return reply.sequence


async def first_events(client: AsyncClient, after: int, count: int) -> list[TaskEvent]:
    found: list[TaskEvent] = []
    async with asyncio.timeout(10):
        async for item in client.watch(after_sequence=after, max_reconnects=0):
            assert isinstance(item, TaskEvent)
            found.append(item)
            if len(found) == count:
                return found
    return found


async def test_a_watch_from_the_listing_sequence_sees_exactly_what_came_after(
    any_db_url: str, make_server: ServerFactory
) -> None:
    server = await make_server(db_url=any_db_url)
    client = make_server.client(server)
    assert await listed_sequence(client) == 0  # nothing has happened yet
    done = await client.create_task(name="sleep_executor", inputs={"seconds": 0})
    await client.execute_task(done.id)
    async with asyncio.timeout(10):
        await client.wait(done.id)
    before = await listed_sequence(client)
    # A quiet server: the listing is as new as the newest event, none of which it misses.
    history = await first_events(client, 0, before)
    assert history[-1].sequence == before
    later = await client.create_task(name="later")
    [created] = await first_events(client, before, 1)
    assert (created.task_id, created.type) == (later.id, "created")

    # After a restart, the listing starts where the log is, not at 0 (a watch from 0
    # would replay every retained event).
    await make_server.stop(server)
    again = await make_server(db_url=any_db_url)
    client = make_server.client(again)
    assert await listed_sequence(client) == created.sequence
