"""A task's attempts (start, end, outcome, error) rebuilt from its stored events, for `get`.

WatchEvents with `task_id` replays the task's history; its `status_changed` events carry
the attempt, the status, the error and the time. The history of trees finished long ago
may be pruned: then only what the task row has is known.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc

from taskgrove._client import AsyncClient
from taskgrove._errors import from_rpc_error
from taskgrove._models import Task, TaskError, TaskEvent
from taskgrove._watch import watch_request, watch_responses
from taskgrove.domain import statuses

REPLAY_LIMIT_S = 5.0
"""At most this long reading a task's history (a running task's keeps growing)."""

_HEARTBEAT_S = 0.05
"""The replay is done at the first heartbeat: the stream has nothing more to send."""


@dataclass
class Attempt:
    """One attempt of a task as its events tell it."""

    number: int
    start_time: datetime | None = None
    end_time: datetime | None = None
    outcome: str = statuses.IN_PROGRESS
    """`completed`, `failed`, `cancelled`, `retried` (failed, another attempt follows),
    `interrupted` (back to pending without an error: the server stopped), or
    `in_progress` while it runs."""
    error: TaskError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "outcome": self.outcome,
            "error": None
            if self.error is None
            else {
                "reason": self.error.reason,
                "message": self.error.message,
                "details": dict(self.error.details),
            },
        }


@dataclass
class History:
    attempts: list[Attempt]
    pruned: bool
    """The events from the task's creation are gone (pruned after the retention period)."""


def attempts_of(events: list[TaskEvent]) -> History:
    """The attempts told by a task's events, in order (the first should be `created`)."""
    pruned = not events or events[0].type != "created"
    attempts: list[Attempt] = []
    current: Attempt | None = None
    for event in events:
        if event.type != "status_changed":
            continue
        if event.status == statuses.IN_PROGRESS:
            if current is None or current.number != event.attempt or current.end_time:
                current = Attempt(event.attempt, start_time=event.time)
                attempts.append(current)
            continue
        if current is None or current.end_time is not None:
            continue  # e.g. a pending task cancelled, or a group's own change
        current.end_time = event.time
        current.error = event.error
        if event.status == statuses.PENDING:
            current.outcome = "retried" if event.error is not None else "interrupted"
        else:
            current.outcome = event.status
    return History(attempts, pruned)


async def task_events(client: AsyncClient, task_id: str) -> list[TaskEvent]:
    """Every stored event of a task, up to now (bounded by `REPLAY_LIMIT_S`)."""
    request = watch_request(task_id=task_id, heartbeat_interval=_HEARTBEAT_S)
    responses = watch_responses(client.stub, request, max_reconnects=0)
    found: list[TaskEvent] = []
    try:
        async with contextlib.aclosing(responses):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLAY_LIMIT_S):
                    async for response in responses:
                        if response.heartbeat:
                            break
                        found.extend(TaskEvent.from_proto(event) for event in response.events)
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None
    return found


async def task_history(client: AsyncClient, task: Task) -> History:
    return attempts_of(await task_events(client, task.id))


def history_lines(history: History, task: Task) -> list[tuple[str, str]]:
    """`get`'s rows for the attempts (label, text)."""
    rows: list[tuple[str, str]] = []
    if history.pruned:
        rows.append(("attempts", f"history pruned; the task shows attempt {task.attempt}"))
        if not history.attempts:
            return rows
    for index, attempt in enumerate(history.attempts):
        label = "attempts" if index == 0 and not history.pruned else ""
        text = f"#{attempt.number} {attempt.outcome}"
        if attempt.start_time is not None:
            text += f"  {_clock(attempt.start_time)}"
            if attempt.end_time is not None:
                seconds = (attempt.end_time - attempt.start_time).total_seconds()
                text += f" -> {_clock(attempt.end_time)} ({seconds:.2f}s)"
        if attempt.error is not None:
            text += f"  {attempt.error.reason}: {attempt.error.message}"
        rows.append((label, text))
    return rows


def _clock(moment: datetime) -> str:
    return moment.astimezone().isoformat(timespec="milliseconds")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
