"""Lines a worker's function logs reach the task's log on the server, live, and a remote
failure's traceback ends its attempt's log."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from taskgrove import Worker, WorkerContext, statuses

from tests.conftest import ServerFactory
from tests.workers.running import started, stopped


async def test_a_workers_log_lines_are_stored_and_followed_live(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    client = make_server.client(server)
    release = threading.Event()
    worker = Worker("logger", slots=2)

    @worker.executor("chatty")
    def chatty(ctx: WorkerContext) -> Any:  # sync: runs in a thread
        ctx.log.info("starting %s", ctx.inputs["n"])
        ctx.log.warning("two\nlines")
        release.wait(10)
        ctx.log.info("done")
        return {"n": ctx.inputs["n"]}

    @worker.executor("broken")
    async def broken(ctx: WorkerContext) -> Any:
        ctx.log.info("about to fail")
        raise ValueError("no such thing")

    running = await started(worker, server)
    try:
        task = await client.create_task(name="c", executor="chatty", inputs={"n": 7})
        await client.execute_task(task.id)
        seen: list[str] = []
        three = asyncio.Event()

        async def follow() -> None:
            async for line in client.task_logs(task.id, follow=True):
                seen.append(line.text)
                if len(seen) == 3:
                    three.set()

        follower = asyncio.create_task(follow())
        async with asyncio.timeout(10):
            await three.wait()  # while the function still waits: live
        assert seen == ["INFO starting 7", "WARNING two", "lines"]
        release.set()
        async with asyncio.timeout(10):
            await follower
        assert seen[-1] == "INFO done"
        assert (await client.get_task(task.id)).status == statuses.COMPLETED

        failing = await client.create_task(name="b", executor="broken")
        await client.execute_task(failing.id)
        async with asyncio.timeout(10):
            done = await client.wait(failing.id)
        assert done.status == statuses.FAILED
        assert done.error is not None
        assert "ValueError: no such thing" in done.error.details["traceback"]
        texts = [line.text async for line in client.task_logs(failing.id)]
        assert texts[0] == "INFO about to fail"
        assert texts[1] == "Traceback (most recent call last):"
        assert texts[-1] == "ValueError: no such thing"
    finally:
        release.set()
        await stopped(worker, running)
