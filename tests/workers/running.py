"""An SDK worker run in the test's own process, against a server (in-process, or any
address: a replica)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from taskgrove import Worker
from taskgrove_server.app import TaskgroveServer

from tests.workers.waiting import until


async def started(worker: Worker, server: TaskgroveServer | str) -> asyncio.Task[None]:
    """`worker` running (registered) against `server` (or its HOST:PORT)."""
    address = server if isinstance(server, str) else f"127.0.0.1:{server.port}"
    task = asyncio.create_task(worker.run(address=address))
    await until(lambda: worker.registered.is_set() or task.done())
    if task.done():
        task.result()  # raises why it ended
    return task


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    async with asyncio.timeout(10):
        await task


@contextlib.asynccontextmanager
async def connected(worker: Worker, server: TaskgroveServer | str) -> AsyncIterator[None]:
    """`worker` running against `server` while the block runs, stopped after it."""
    task = await started(worker, server)
    try:
        yield
    finally:
        await stopped(worker, task)
