"""WatchEvents: replay from the event log, then the live feed, with no gap or duplicate.

The subscription to the live feed is taken *before* the replay query, so every event is
either already stored (replayed) or arrives live afterwards; anything at or below the last
sequence sent is dropped. A watcher that cannot keep up is cut off (SUBSCRIBER_TOO_SLOW)
and resumes from its last sequence; nothing waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from taskgrove.v1 import task_service_pb2

from taskgrove_server.api.convert import task_to_proto
from taskgrove_server.api.error_mapping import abort
from taskgrove_server.errors import Code, FieldViolation, TaskgroveError, invalid
from taskgrove_server.events.event import Event
from taskgrove_server.events.hub import Closed, EventFilter, EventHub, Overflow, Subscription
from taskgrove_server.events.wire import events_response
from taskgrove_server.storage.event_log import EventLog

REPLAY_PAGE = 5_000
EVENTS_PER_MESSAGE = 1_000
SNAPSHOT_CHUNK = 5_000
DEFAULT_HEARTBEAT_S = 5.0
MIN_HEARTBEAT_S = 0.01


def _validate(request: task_service_pb2.WatchEventsRequest) -> float:
    if request.root_id and request.task_id:
        raise invalid(
            [FieldViolation("task_id", "set at most one of root_id and task_id", "INVALID_FILTER")]
        )
    if request.after_sequence < 0:
        raise invalid([FieldViolation("after_sequence", "must be >= 0", "INVALID_SEQUENCE")])
    if request.HasField("heartbeat_interval"):
        return max(MIN_HEARTBEAT_S, request.heartbeat_interval.ToTimedelta().total_seconds())
    return DEFAULT_HEARTBEAT_S


class EventStreamer:
    def __init__(self, hub: EventHub, log: EventLog) -> None:
        self._hub = hub
        self._log = log

    async def watch(self, request: task_service_pb2.WatchEventsRequest, context: Any) -> None:
        try:
            heartbeat = _validate(request)
        except TaskgroveError as error:
            await abort(context, error)
        flt = EventFilter(request.root_id, request.task_id, request.user_id)
        subscription = self._hub.subscribe(flt)
        try:
            last = await self._start(request, flt, subscription, context)
            last = await self._replay(flt, last, subscription, context)
            await self._live(last, heartbeat, subscription, context)
        except TaskgroveError as error:
            await abort(context, error)
        except Overflow:
            await abort(
                context,
                TaskgroveError(
                    Code.RESOURCE_EXHAUSTED,
                    "SUBSCRIBER_TOO_SLOW",
                    "the watcher fell too far behind; resume from its last sequence",
                ),
            )
        except Closed:
            await abort(
                context,
                TaskgroveError(
                    Code.UNAVAILABLE,
                    "SERVER_SHUTTING_DOWN",
                    "the server is shutting down; resume from the last sequence",
                ),
            )
        finally:
            self._hub.unsubscribe(subscription)

    async def _start(
        self,
        request: task_service_pb2.WatchEventsRequest,
        flt: EventFilter,
        subscription: Subscription,
        context: Any,
    ) -> int:
        if request.include_snapshot:
            # Chunks go out as they are read; each message is sent once the next chunk
            # is known, so the last one can say it completes the snapshot.
            sequence = 0
            pending: task_service_pb2.WatchEventsResponse | None = None
            async for rows, sequence in self._log.snapshot(flt, SNAPSHOT_CHUNK):
                if pending is not None:
                    await self._send(context, subscription, pending)
                pending = task_service_pb2.WatchEventsResponse(
                    snapshot=[task_to_proto(row) for row in rows], sequence=sequence
                )
            assert pending is not None
            pending.snapshot_complete = True
            await self._send(context, subscription, pending)
            return sequence
        after = request.after_sequence
        if after > 0:
            compacted = await self._log.compacted_through(flt)
            if after < compacted:
                raise TaskgroveError(
                    Code.OUT_OF_RANGE,
                    "EVENTS_COMPACTED",
                    f"events up to {compacted} were pruned; resume after {compacted} "
                    "or start again from a snapshot",
                    metadata={"oldest_sequence": str(compacted + 1)},
                )
        return after

    async def _replay(
        self, flt: EventFilter, last: int, subscription: Subscription, context: Any
    ) -> int:
        while True:
            events = await self._log.after(flt, last, REPLAY_PAGE)
            if events:
                last = await self._send_events(context, subscription, events)
            if len(events) < REPLAY_PAGE:
                return last

    async def _live(
        self, last: int, heartbeat: float, subscription: Subscription, context: Any
    ) -> None:
        while True:
            batch = await subscription.next_batch(heartbeat)
            if batch is None:
                # Idle with an empty buffer: every matching event up to the hub's last
                # sequence has reached this watcher, so that is a safe resume point.
                await self._send(
                    context,
                    subscription,
                    task_service_pb2.WatchEventsResponse(
                        heartbeat=True, sequence=max(last, self._hub.last_sequence)
                    ),
                )
                continue
            fresh = [event for event in batch if event.sequence > last]
            if fresh:
                last = await self._send_events(context, subscription, fresh)

    async def _send_events(
        self, context: Any, subscription: Subscription, events: Sequence[Event]
    ) -> int:
        for start in range(0, len(events), EVENTS_PER_MESSAGE):
            chunk = events[start : start + EVENTS_PER_MESSAGE]
            await self._send(context, subscription, events_response(chunk))
        return events[-1].sequence

    @staticmethod
    async def _send(
        context: Any,
        subscription: Subscription,
        message: task_service_pb2.WatchEventsResponse | bytes,
    ) -> None:
        """Write one message, giving up as soon as the subscription overflows: a reader
        that stopped reading blocks the write, and must not hold anything meanwhile."""
        if subscription.overflowed:
            raise Overflow
        write = asyncio.ensure_future(context.write(message))
        # If the stream is cancelled meanwhile, nobody awaits the write: retrieve its
        # outcome so a client leaving mid-write is not logged as an error.
        write.add_done_callback(lambda done: done.cancelled() or done.exception())
        overflow = asyncio.ensure_future(subscription.overflow.wait())
        try:
            await asyncio.wait({write, overflow}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            overflow.cancel()
        if not write.done():
            write.cancel()
            raise Overflow
        write.result()
