"""Ready tasks in dispatch order, and the concurrency limits that hold them back.

Entries are (priority, id, node): ids are UUIDv7, so id order is creation order. An entry
goes stale when its task starts, waits again, is re-prioritised or let go; stale entries
are skipped when they come up, which is cheaper than removing them from the heap.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Protocol

from taskgrove.domain import statuses

from taskgrove_server.engine.node import Node

_Entry = tuple[int, str, Node]


def _still_ready(entry: _Entry) -> bool:
    node = entry[2]
    return (
        node.status == statuses.PENDING
        and not node.waiting
        and node.retry_at_us is None
        and entry[0] == node.priority
        and not node.detached
    )


class SlotGate(Protocol):
    """Where remote executors run: a task of one starts only with a worker slot."""

    def is_remote(self, executor: str) -> bool: ...

    def reserve(self, executor: str, task_id: str) -> bool: ...

    def unreserve(self, task_id: str) -> None: ...

    def capacity(self, executor: str) -> tuple[int, int]:
        """(connected workers serving it, their free slots)."""
        ...


class ReadyQueue:
    def __init__(
        self,
        limit: int,
        executor_limits: dict[str, int] | None = None,
        gate: SlotGate | None = None,
    ) -> None:
        self.limit = limit
        self.gate = gate
        """Attempts that may run at once, across the server."""
        self.executor_limits = dict(executor_limits or {})
        self.running = 0
        """Attempts claimed or running now."""
        self._running_by_executor: dict[str, int] = defaultdict(int)
        self._ready: list[_Entry] = []
        self._held: dict[str, list[_Entry]] = defaultdict(list)
        """Per executor: ready tasks its limit holds back."""

    def push(self, node: Node) -> None:
        heapq.heappush(self._ready, (node.priority, node.id, node))

    def take(self) -> Node | None:
        """The most urgent ready task that may start now, counted as running; None when
        nothing may start."""
        while self._ready and self.running < self.limit:
            entry = heapq.heappop(self._ready)
            node = entry[2]
            if not _still_ready(entry):
                continue
            assert node.executor is not None
            limit = self.executor_limits.get(node.executor)
            if limit is not None and self._running_by_executor[node.executor] >= limit:
                heapq.heappush(self._held[node.executor], entry)
                continue
            gate = self.gate
            if (
                gate is not None
                and gate.is_remote(node.executor)
                and not gate.reserve(node.executor, node.id)
            ):
                heapq.heappush(self._held[node.executor], entry)  # until a worker slot frees
                continue
            self.running += 1
            self._running_by_executor[node.executor] += 1
            return node
        return None

    def release(self, executor: str, task_id: str) -> None:
        """An attempt of `executor` ended: its slot goes back to the most urgent task this
        executor's limit held back (one per slot: re-queueing all of them on every
        release would cost O(held) per task)."""
        self.running -= 1
        self._running_by_executor[executor] -= 1
        if self.gate is not None and self.gate.is_remote(executor):
            self.gate.unreserve(task_id)  # a claim that ended before its assignment
        held = self._held.get(executor)
        while held:
            entry = heapq.heappop(held)
            if _still_ready(entry):
                heapq.heappush(self._ready, entry)
                break

    def reopen(self, executor: str, count: int) -> None:
        """A worker of `executor` has `count` free slots: as many of its held tasks compete
        again (one is held again if the slot is gone when it comes up)."""
        held = self._held.get(executor)
        while held and count > 0:
            entry = heapq.heappop(held)
            if _still_ready(entry):
                heapq.heappush(self._ready, entry)
                count -= 1

    def held_back(self, executor: str) -> list[Node]:
        """The ready tasks of `executor` held back (its limit, or no worker slot)."""
        return [entry[2] for entry in self._held.get(executor, ()) if _still_ready(entry)]

    def held_executors(self) -> list[str]:
        """Executors with tasks held back (some entries may be stale)."""
        return [executor for executor, held in self._held.items() if held]

    @property
    def depth(self) -> int:
        """Entries waiting: ready ones and those a limit or a worker slot holds back
        (O(executors); stale entries count until they come up)."""
        return len(self._ready) + sum(len(held) for held in self._held.values())

    def executor_running(self, executor: str) -> int:
        return self._running_by_executor.get(executor, 0)

    def position(self, node: Node) -> int:
        """1 + the number of ready tasks ahead of `node`."""
        key = (node.priority, node.id)
        ahead = {entry[1] for entry in self._ready if entry[:2] < key and _still_ready(entry)}
        return len(ahead) + 1
