"""`wait_set` keeps a cancellation that comes in the loop turn its event is set in
(`asyncio.wait_for` on Python 3.11 loses it, and a loop around it never ends)."""

from __future__ import annotations

import asyncio

import pytest
from taskgrove_server.waits import wait_set


async def test_a_cancel_in_the_turn_the_event_is_set_ends_a_waiting_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await wait_set(event, 5.0)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    event.set()
    task.cancel()  # same turn as the wake-up
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
    assert rounds == 1


async def test_it_tells_a_set_event_from_a_limit_reached() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    event.set()
    assert await wait_set(event, 0.01) is True
    assert await wait_set(event, None) is True
