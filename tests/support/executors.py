"""Test executors and the registries that hold them."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

from support.waiting import WAIT_S


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


class Gates:
    """A `gate` executor that blocks until the test opens its gate (by `inputs.gate`), for
    at most `limit_s` seconds."""

    def __init__(self, limit_s: float = WAIT_S) -> None:
        self.limit_s = limit_s
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.started: set[str] = set()

    def open(self, name: str) -> None:
        self.gates[name].set()

    def registry(self) -> ExecutorRegistry:
        async def run(context: ExecutionContext) -> Any:
            gate = str(context.inputs["gate"])
            self.started.add(gate)
            async with asyncio.timeout(self.limit_s):
                await self.gates[gate].wait()
            return {"gate": gate}

        registry = ExecutorRegistry.default(load_entry_points=False)
        registry.register(Executor(id="gate", run=run, input_schema={"type": "object"}))
        return registry


def gate_task(name: str, gate: str, deps: Sequence[str] = ()) -> dict[str, Any]:
    """A task of the `gate` executor under `root` (see `Gates`)."""
    return {
        "id": name,
        "name": name,
        "executor": "gate",
        "parent_id": "root",
        "inputs": {"gate": gate},
        "dependencies": list(deps),
    }


class Barrier:
    """A `barrier` executor whose tasks finish only once `parties` of them run at the same
    time (each fails with a timeout after `limit_s` seconds otherwise). Records how many
    ran at once at most, and the order they started in (by task name)."""

    def __init__(self, parties: int, limit_s: float = WAIT_S) -> None:
        self.parties = parties
        self.limit_s = limit_s
        self.running = 0
        self.max_running = 0
        self.started: list[str] = []
        self._full = asyncio.Event()

    def registry(self) -> ExecutorRegistry:
        async def run(context: ExecutionContext) -> Any:
            self.started.append(context.name)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            if self.running >= self.parties:
                self._full.set()
            try:
                async with asyncio.timeout(self.limit_s):
                    await self._full.wait()
            finally:
                self.running -= 1
            return None

        registry = ExecutorRegistry.default(load_entry_points=False)
        registry.register(Executor(id="barrier", run=run, input_schema={"type": "object"}))
        return registry
