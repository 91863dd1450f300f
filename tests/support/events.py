"""Reading events: the stored history through WatchEvents, WatchEvents requests, and a
raw stream read in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
from taskgrove import AsyncClient, TaskEvent
from taskgrove.v1 import event_pb2, task_service_pb2, task_service_pb2_grpc
from taskgrove_server.events.event import Event

from support.status_details import describe
from support.waiting import WAIT_S, until


async def history(
    client: AsyncClient, *, heartbeat_s: float = 0.05, limit_s: float = WAIT_S, **flt: Any
) -> list[TaskEvent]:
    """Every stored event (optionally filtered), read through WatchEvents up to the first
    heartbeat (the replay is over and the stream is idle)."""
    request = task_service_pb2.WatchEventsRequest(after_sequence=0, **flt)
    request.heartbeat_interval.FromTimedelta(timedelta(seconds=heartbeat_s))
    events: list[TaskEvent] = []
    call = client.stub.WatchEvents(request)
    try:
        async with asyncio.timeout(limit_s):
            async for response in call:
                events.extend(TaskEvent.from_proto(e) for e in response.events)
                if response.heartbeat:
                    break
    finally:
        call.cancel()
    return events


class Follower:
    """Reads one raw WatchEvents stream in a background task, recording every message.

    `wait_for` polls every `poll_s` seconds for at most `wait_s` (override in a subclass).
    """

    wait_s: float = WAIT_S
    poll_s: float = 0.01

    def __init__(
        self,
        stub: task_service_pb2_grpc.TaskServiceStub,
        request: task_service_pb2.WatchEventsRequest,
    ) -> None:
        self.request = request
        self.call = stub.WatchEvents(request)
        self.messages: list[task_service_pb2.WatchEventsResponse] = []
        self.events: list[event_pb2.TaskEvent] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                message = await self.call.read()
                if message is grpc.aio.EOF:
                    return
                self.messages.append(message)
                self.events.extend(message.events)
        except grpc.aio.AioRpcError as error:
            self.error = error
        finally:
            self.ended.set()

    @property
    def sequences(self) -> list[int]:
        return [event.sequence for event in self.events]

    @property
    def last(self) -> int:
        return max((message.sequence for message in self.messages), default=0)

    async def wait_for(self, predicate: Callable[[Follower], Any]) -> None:
        await until(lambda: predicate(self) or self.ended.is_set(), self.wait_s, self.poll_s)
        assert predicate(self), f"stream ended early: {describe(self.error)}"

    async def reach(self, sequence: int) -> None:
        """Wait until every event up to `sequence` has been received."""
        await self.wait_for(lambda f: f.sequences and f.sequences[-1] >= sequence)

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel background watchers; re-raise what one of them failed with (an assertion
    inside a watcher is the real cause of whatever the test saw)."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    outcomes = await asyncio.gather(*running, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


def progress_event(
    task_id: str, *, root_id: str = "r", name: str = "n", time_us: int = 0, sequence: int = 0
) -> Event:
    """A server-side `progress` event, for writer and feed tests."""
    return Event(
        task_id=task_id, root_id=root_id, user_id="u", parent_id=None, name=name,
        type="progress", status="in_progress", previous_status=None, progress=0.0,
        progress_message="", error=None, attempt=1, is_group=False, time_us=time_us,
        sequence=sequence,
    )  # fmt: skip
