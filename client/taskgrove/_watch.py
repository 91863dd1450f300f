"""The one WatchEvents resume loop: `AsyncClient.watch` and the benchmark's watchers use it.

It yields the stream's raw messages, so a caller that wants speed (the benchmark) decodes
only what it needs, and a caller that wants models (`AsyncClient.watch`) builds them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta

import grpc

from taskgrove.v1 import task_service_pb2, task_service_pb2_grpc

RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""Codes after which a watch resumes where it stopped (server restarting or moving on, or
this watcher cut off as too slow)."""

_FIRST_BACKOFF_S = 0.05


def watch_request(
    *,
    root_id: str = "",
    task_id: str = "",
    user_id: str = "",
    after_sequence: int = 0,
    include_snapshot: bool = False,
    heartbeat_interval: float | None = None,
) -> task_service_pb2.WatchEventsRequest:
    """A WatchEventsRequest (`heartbeat_interval` in seconds; None: the server's)."""
    request = task_service_pb2.WatchEventsRequest(
        root_id=root_id,
        task_id=task_id,
        user_id=user_id,
        after_sequence=after_sequence,
        include_snapshot=include_snapshot,
    )
    if heartbeat_interval is not None:
        request.heartbeat_interval.FromTimedelta(timedelta(seconds=heartbeat_interval))
    return request


def backoff_seconds(failures: int, max_backoff: float) -> float:
    """Jittered exponential backoff before reconnect number `failures` (1, 2, ...)."""
    ceiling = min(max_backoff, _FIRST_BACKOFF_S * 2 ** min(failures, 10))
    return random.uniform(ceiling / 2, ceiling)


async def watch_responses(
    stub: task_service_pb2_grpc.TaskServiceStub,
    request: task_service_pb2.WatchEventsRequest,
    *,
    max_backoff: float = 5.0,
    max_reconnects: int | None = None,
    on_reconnect: Callable[[grpc.aio.AioRpcError], None] | None = None,
) -> AsyncGenerator[task_service_pb2.WatchEventsResponse, None]:
    """The messages of `stub.WatchEvents(request)`, across reconnects.

    - On UNAVAILABLE or RESOURCE_EXHAUSTED it reconnects after a jittered exponential
      backoff (at most `max_backoff` seconds) and resumes after the last sequence seen;
      after more than `max_reconnects` failures in a row (None: no limit) it raises the
      error, as it does at once for any other code. `on_reconnect` is told of each retry.
    - Every event is yielded once: a message carries only events after those already
      yielded (the server sends them in sequence order).
    - With `request.include_snapshot`, the snapshot's messages come first, and only once
      it is whole: the last of them is marked `snapshot_complete`. A stream broken in the
      middle of a snapshot asks for it again, and the partial one is never yielded.
    - Heartbeats are yielded too (a stream's first message shows that it is established).
    - Leaving early (break, `aclose()`) cancels the call, so the server ends it too. Close
      the generator explicitly (`contextlib.aclosing`) when you stop before its end.

    `request` itself is not changed. The stream ends when the server ends it.
    """
    current = task_service_pb2.WatchEventsRequest()
    current.CopyFrom(request)
    last = request.after_sequence
    need_snapshot = request.include_snapshot
    failures = 0
    while True:
        current.after_sequence = last
        current.include_snapshot = need_snapshot
        chunks: list[task_service_pb2.WatchEventsResponse] = []
        call = stub.WatchEvents(current)
        try:
            async for response in call:
                failures = 0
                if need_snapshot:
                    # A large snapshot spans several messages; it is whole at the one
                    # marked complete (a broken stream starts it again).
                    chunks.append(response)
                    if response.snapshot_complete:
                        need_snapshot = False
                        last = response.sequence
                        for chunk in chunks:
                            yield chunk
                        chunks = []
                    continue
                if response.events and response.events[0].sequence <= last:
                    response = _without_events_up_to(response, last)  # a repeat after resuming
                if response.events:
                    last = response.events[-1].sequence
                # Everything matching up to here was sent: a safe resume point.
                last = max(last, response.sequence)
                yield response
            return
        except grpc.aio.AioRpcError as error:
            failures += 1
            if error.code() not in RESUMABLE or (
                max_reconnects is not None and failures > max_reconnects
            ):
                raise
            if on_reconnect is not None:
                on_reconnect(error)
            await asyncio.sleep(backoff_seconds(failures, max_backoff))
        finally:
            # Leaving early (break, aclose) must end the stream on the server too.
            call.cancel()


def _without_events_up_to(
    response: task_service_pb2.WatchEventsResponse, sequence: int
) -> task_service_pb2.WatchEventsResponse:
    """A copy of `response` keeping only the events after `sequence`."""
    trimmed = task_service_pb2.WatchEventsResponse()
    trimmed.CopyFrom(response)
    del trimmed.events[:]
    trimmed.events.extend(event for event in response.events if event.sequence > sequence)
    return trimmed
