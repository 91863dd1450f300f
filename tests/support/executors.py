"""Test executors and the registries that hold them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry


def block_event_loop(seconds: float) -> None:
    """Hold the event loop, like an executor doing CPU work without yielding."""
    time.sleep(seconds)


def pulse_registry() -> ExecutorRegistry:
    """`pulse`: reports progress (a write starts), yields `yields` times, then holds the
    loop for longer than a watcher's heartbeat interval: when the loop runs again, the
    write's commit and the watchers' idle timers complete in the same turn."""

    async def run(context: ExecutionContext) -> Any:
        context.report_progress(0.5, "half way")
        for _ in range(int(context.inputs["yields"])):
            await asyncio.sleep(0)
        block_event_loop(float(context.inputs["hold_s"]))
        return None

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="pulse", run=run, input_schema={"type": "object"}))
    return registry
