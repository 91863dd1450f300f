"""Bounded waits: every helper gives up with `TimeoutError` after `limit_s` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from taskgrove import AsyncClient, Task

WAIT_S = 15.0
"""The default bound of a wait."""


async def until(
    predicate: Callable[[], Any], limit_s: float = WAIT_S, poll_s: float = 0.01
) -> None:
    """Until `predicate()` is true, checked every `poll_s` seconds."""
    async with asyncio.timeout(limit_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(poll_s)


async def until_task(
    client: AsyncClient,
    task_id: str,
    predicate: Callable[[Task], bool],
    limit_s: float = WAIT_S,
    poll_s: float = 0.01,
) -> Task:
    """The task, once `predicate` holds for it (read every `poll_s` seconds)."""
    async with asyncio.timeout(limit_s):
        while True:
            task = await client.get_task(task_id)
            if predicate(task):
                return task
            await asyncio.sleep(poll_s)


async def wait_finished(client: AsyncClient, task_id: str, limit_s: float = WAIT_S) -> Task:
    """`client.wait(task_id)`, bounded."""
    async with asyncio.timeout(limit_s):
        return await client.wait(task_id)
