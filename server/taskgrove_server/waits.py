"""Waiting for an event, with a limit, without losing a cancellation.

`asyncio.wait_for(event.wait(), t)` on Python 3.11 returns normally when the event is
set in the same loop turn as the waiting task is cancelled: the cancellation is lost,
and a loop around it runs on for ever (a replica stopping just as another replica's
NOTIFY woke its sweep never finished its shutdown). `asyncio.timeout` tells its own
cancellation apart from one from outside, so this is built on it.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, limit_s: float | None) -> bool:
    """Until `event` is set (True) or `limit_s` seconds have passed (False; None: no
    limit)."""
    try:
        async with asyncio.timeout(limit_s):
            await event.wait()
    except TimeoutError:
        return False
    return True
