"""An SDK worker run in the test's own process, against an in-process server."""

from __future__ import annotations

import asyncio

from taskgrove import Worker
from taskgrove_server.app import TaskgroveServer

from tests.workers.waiting import until


async def started(worker: Worker, server: TaskgroveServer) -> asyncio.Task[None]:
    """`worker` running (registered) against `server`."""
    task = asyncio.create_task(worker.run(address=f"127.0.0.1:{server.port}"))
    await until(lambda: worker.registered.is_set() or task.done())
    if task.done():
        task.result()  # raises why it ended
    return task


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    async with asyncio.timeout(10):
        await task
