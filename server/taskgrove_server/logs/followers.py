"""Who follows which task's log: committed lines, attempt starts and ends fan out to them.

A follower's queue is bounded: one that falls behind is marked `overflowed` and reads on
from storage, which holds every committed line (the queue only saves that read)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from taskgrove_server.storage.records import LogLineRow

MAX_QUEUED = 10_000
"""Lines (and notices) a follower may have waiting before it reads from storage."""


@dataclass(frozen=True, slots=True)
class LogNotice:
    attempt: int
    kind: str
    """`lines`, `started` or `ended`."""
    lines: list[LogLineRow] = field(default_factory=list)


class LogsClosed(Exception):
    """The server is shutting down: followers stop."""


class Follower:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.notices: deque[LogNotice] = deque()
        self.overflowed = False
        self.closed = False
        self._queued = 0
        self._wake = asyncio.Event()

    def push(self, notice: LogNotice) -> None:
        if self.overflowed:
            return
        self._queued += 1 + len(notice.lines)
        if self._queued > MAX_QUEUED:
            self.overflowed = True
            self.notices.clear()
        else:
            self.notices.append(notice)
        self._wake.set()

    def pop(self) -> LogNotice | None:
        if not self.notices:
            return None
        notice = self.notices.popleft()
        self._queued -= 1 + len(notice.lines)
        return notice

    def put_back(self, notices: list[LogNotice]) -> None:
        """Notices popped too early, first again."""
        for notice in reversed(notices):
            self.notices.appendleft(notice)
            self._queued += 1 + len(notice.lines)

    def recovered(self) -> None:
        """The follower has read storage past what it missed."""
        self.overflowed = False
        self._queued = 0

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def wait(self, timeout_s: float) -> None:
        """Until something arrives (or `timeout_s`); raises LogsClosed at shutdown."""
        if self.closed:
            raise LogsClosed
        if self.notices or self.overflowed:
            return
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        if self.closed:
            raise LogsClosed


class LogFollowers:
    def __init__(self) -> None:
        self._by_task: dict[str, set[Follower]] = {}
        self._closed = False

    def follow(self, task_id: str) -> Follower:
        follower = Follower(task_id)
        if self._closed:
            follower.close()
        self._by_task.setdefault(task_id, set()).add(follower)
        return follower

    def close(self) -> None:
        """Shutting down: every follower stops (LogsClosed), now and from now on."""
        self._closed = True
        for followers in self._by_task.values():
            for follower in followers:
                follower.close()

    def leave(self, follower: Follower) -> None:
        followers = self._by_task.get(follower.task_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._by_task[follower.task_id]

    def watching(self, task_id: str) -> bool:
        return task_id in self._by_task

    def _push(self, task_id: str, notice: LogNotice) -> None:
        for follower in self._by_task.get(task_id, ()):
            follower.push(notice)

    def publish(self, task_id: str, attempt: int, lines: list[LogLineRow]) -> None:
        self._push(task_id, LogNotice(attempt, "lines", lines))

    def started(self, task_id: str, attempt: int) -> None:
        self._push(task_id, LogNotice(attempt, "started"))

    def ended(self, task_id: str, attempt: int) -> None:
        self._push(task_id, LogNotice(attempt, "ended"))
