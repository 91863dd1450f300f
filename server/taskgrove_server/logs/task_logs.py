"""The logs of every attempt: opened by the runner, read and followed by StreamTaskLogs.

Storage is the truth a follower reads first; notices (committed lines, attempt starts and
ends) carry it on from there. Whether an attempt may still log is decided by this
server's open logs and, for an attempt claimed but not yet started, by the task's stored
status: a follower rechecks that while it waits, so it never waits on a log that ended
unseen.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from taskgrove.domain import statuses

from taskgrove_server.logs.attempt_log import AttemptLog
from taskgrove_server.logs.followers import Follower, LogFollowers, LogNotice
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.records import LogLineRow
from taskgrove_server.storage.writer import Writer

RECHECK_S = 0.5
"""How often a waiting follower looks at the task's stored status."""

TaskState = Callable[[], Awaitable[tuple[str, int] | None]]
"""The task's stored (status, latest attempt); None once it is gone (deleted)."""


@dataclass(frozen=True, slots=True)
class LogChunk:
    attempt: int
    lines: list[LogLineRow] = field(default_factory=list)
    cut_lines: int = 0
    """Lines of the attempt cut before these (on an attempt's first chunk)."""
    ended: bool = False


class TaskLogs:
    def __init__(self, writer: Writer, reads: TaskReads) -> None:
        self._writer = writer
        self._reads = reads
        self.followers = LogFollowers()
        self._open: dict[tuple[str, int], AttemptLog] = {}

    def open(self, task_id: str, attempt: int) -> AttemptLog:
        """The log of an attempt that starts now; `close()` it when the attempt ends."""
        log = AttemptLog(task_id, attempt, self._writer, self.followers, self._forget)
        self._open[(task_id, attempt)] = log
        self.followers.started(task_id, attempt)
        return log

    def _forget(self, log: AttemptLog) -> None:
        if self._open.get((log.task_id, log.attempt)) is log:
            del self._open[(log.task_id, log.attempt)]

    def is_open(self, task_id: str, attempt: int) -> bool:
        return (task_id, attempt) in self._open

    async def stream(
        self, task_id: str, attempt: int, *, follow: bool, state: TaskState
    ) -> AsyncGenerator[LogChunk, None]:
        """The stored lines of `attempt` (0: the latest); with `follow`, then its new
        lines until it ends, and with `attempt` 0 each later attempt until the task ends."""
        follower = self.followers.follow(task_id) if follow else None
        try:
            now = await state()
            current = attempt or (now[1] if now is not None else 0)
            while True:
                if current >= 1:
                    async for chunk in self._attempt(task_id, current, follower, state):
                        yield chunk
                if follower is None or attempt:
                    return
                following = await self._next_attempt(current, follower, state)
                if following is None:
                    return
                current = following
        finally:
            if follower is not None:
                self.followers.leave(follower)

    async def _attempt(
        self, task_id: str, attempt: int, follower: Follower | None, state: TaskState
    ) -> AsyncGenerator[LogChunk, None]:
        stored = await self._reads.task_log(task_id, attempt)
        cut = stored[0].sequence - 1 if stored else 0
        if follower is None:
            ended = not await self._may_log(task_id, attempt, state)
            yield LogChunk(attempt, stored, cut, ended=ended)
            return
        yield LogChunk(attempt, stored, cut)
        later: list[LogNotice] = []
        try:
            async for chunk in self._follow(task_id, attempt, stored, follower, state, later):
                yield chunk
        finally:
            follower.put_back(later)  # a later attempt's start, for _next_attempt

    async def _follow(
        self,
        task_id: str,
        attempt: int,
        stored: list[LogLineRow],
        follower: Follower,
        state: TaskState,
        later: list[LogNotice],
    ) -> AsyncGenerator[LogChunk, None]:
        last = stored[-1].sequence if stored else 0
        while True:
            notice = follower.pop()
            if notice is None:
                if follower.overflowed:
                    follower.recovered()
                    missed = await self._reads.task_log(task_id, attempt, last)
                    if missed:
                        last = missed[-1].sequence
                        yield LogChunk(attempt, missed)
                    continue
                if not await self._may_log(task_id, attempt, state):
                    # Ended unseen (or never started): what it wrote is all stored now.
                    rest = await self._reads.task_log(task_id, attempt, last)
                    yield LogChunk(attempt, rest, ended=True)
                    return
                await follower.wait(RECHECK_S)
                continue
            if notice.attempt != attempt:
                if notice.kind == "started" and notice.attempt > attempt:
                    later.append(notice)
                continue
            if notice.kind == "lines":
                fresh = [line for line in notice.lines if line.sequence > last]
                if fresh:
                    last = fresh[-1].sequence
                    yield LogChunk(attempt, fresh)
            elif notice.kind == "ended":
                yield LogChunk(attempt, ended=True)
                return

    async def _may_log(self, task_id: str, attempt: int, state: TaskState) -> bool:
        if self.is_open(task_id, attempt):
            return True
        now = await state()
        return now is not None and now == (statuses.IN_PROGRESS, attempt)

    async def _next_attempt(self, current: int, follower: Follower, state: TaskState) -> int | None:
        """The attempt after `current` once it starts (or `current` again: a run handed
        back does not count), or None once the task has ended."""
        while True:
            while (notice := follower.pop()) is not None:
                if notice.kind == "started" and notice.attempt >= current:
                    return notice.attempt
            follower.recovered()
            now = await state()
            if now is None:
                return None
            status, latest = now
            if latest > current:
                return latest
            if status in statuses.TERMINAL:
                return None
            await follower.wait(RECHECK_S)
