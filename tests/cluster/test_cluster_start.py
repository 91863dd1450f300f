"""Replicas started together on an empty PostgreSQL database: one migrates it, the
others wait for that and find it at head; all of them serve."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from taskgrove import AsyncClient
from taskgrove_server.testing import ServerProcess


async def test_three_replicas_started_at_once_on_an_empty_database_all_serve(
    pg_db_url: str, tmp_path: Path
) -> None:
    processes = [ServerProcess(pg_db_url, log_path=tmp_path / f"replica-{i}.log") for i in range(3)]
    try:
        # Started at the same moment: each start() waits for its own "serving" line.
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))
        for process in processes:
            async with AsyncClient(process.address) as client:
                task = await client.create_task(name="sleep_executor", inputs={"seconds": 0})
                assert (await client.get_task(task.id)).id == task.id
    finally:
        for process in processes:
            process.stop(signal.SIGKILL)
