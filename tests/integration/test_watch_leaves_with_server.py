"""A watcher who leaves just after its snapshot leaves nothing running once the server
has stopped: the cancel of its request must not strand a read. Through aiosqlite it
did, in about one run in a hundred of the snapshot test: a connection closed after its
worker thread had stopped, and the request's task waited for it forever, and so did
the event loop's shutdown. This checks the property; that race needed pytest's
teardown timing and did not show here in 100 rounds of the old code."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from taskgrove import AsyncClient
from taskgrove.v1 import task_service_pb2
from taskgrove_server.api.watch import SNAPSHOT_CHUNK
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig
from taskgrove_server.testing import sqlite_url

from tests.support.waiting import until

ROUNDS = 20
TASKS = SNAPSHOT_CHUNK + 300  # a snapshot of two messages


def started_since(before: set[asyncio.Task[object]]) -> list[str]:
    """Names of the tasks running now that were not running at `before`."""
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    return sorted(task.get_name() for task in left)


async def leftovers(before: set[asyncio.Task[object]]) -> list[str]:
    """Tasks started since `before` still running after a few seconds' grace."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: not started_since(before), limit_s=5)
    return started_since(before)


async def test_a_watch_cancelled_after_its_snapshot_ends_with_the_server(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "taskgrove.db")
    root = ""
    for _ in range(ROUNDS):
        before = asyncio.all_tasks()
        server = TaskgroveServer(ServerConfig(address="127.0.0.1:0", db_url=url))
        await server.start()
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            if not root:
                tree = [{"id": "root", "name": "root"}] + [
                    {"id": f"c{i}", "name": "sleep_executor", "parent_id": "root"}
                    for i in range(TASKS)
                ]
                root = (await client.create_task_tree(tree, basic=True))["root"].id
            request = task_service_pb2.WatchEventsRequest(root_id=root, include_snapshot=True)
            call = client.stub.WatchEvents(request)
            async with asyncio.timeout(30):
                async for response in call:
                    if response.snapshot_complete:
                        break
            call.cancel()
        await server.stop(grace=1)
        assert await leftovers(before) == []
