"""WatchEvents: replay from the event log, then the live feed, with no gap or duplicate.

The subscription to the live feed is taken *before* the replay query, so every event is
either already stored (replayed) or arrives live afterwards; anything at or below the last
sequence sent is dropped. A watcher that cannot keep up is cut off (SUBSCRIBER_TOO_SLOW)
and resumes from its last sequence; nothing waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from taskgrove.domain import reasons
from taskgrove.v1 import task_service_pb2

from taskgrove_server.api.convert import Problems, duration_ms, task_to_proto
from taskgrove_server.api.error_mapping import Malformed, abort, malformed_error, service_error
from taskgrove_server.api.event_wire import event_field, events_response
from taskgrove_server.errors import Code, FieldViolation, ServiceError, invalid_field, not_found
from taskgrove_server.events.event import Event, EventFilter
from taskgrove_server.events.hub import Closed, EventHub, Overflow, Subscription
from taskgrove_server.identity import Caller
from taskgrove_server.storage.event_log import EventLog

REPLAY_PAGE = 5_000
EVENTS_PER_MESSAGE = 1_000
SNAPSHOT_CHUNK = 5_000
MESSAGE_BYTES = 4 * 1024 * 1024
"""A message ends early once it holds this much (large tasks or events), or less when the
server's message limit is lower."""
CUT_OFF_GRACE_S = 30.0
"""How long a watcher cut off as too slow has to take the message in flight, before its
status can follow."""
DEFAULT_HEARTBEAT_S = 5.0
MAX_HEARTBEAT_S = 3600.0


def _validate(request: task_service_pb2.WatchEventsRequest, floor: float) -> float:
    """The heartbeat interval in seconds, once the request is known to be valid."""
    if request.root_id and request.task_id:
        raise invalid_field(
            "task_id", reasons.INVALID_FILTER, "set at most one of root_id and task_id"
        )
    if request.after_sequence < 0:
        raise invalid_field("after_sequence", reasons.INVALID_SEQUENCE, "must be >= 0")
    if not request.HasField("heartbeat_interval"):
        return DEFAULT_HEARTBEAT_S
    problems = Problems()
    millis = duration_ms(
        request.heartbeat_interval, "heartbeat_interval", reasons.INVALID_HEARTBEAT, problems
    )
    if problems.found or millis < 0 or millis > MAX_HEARTBEAT_S * 1000:
        raise invalid_field(
            "heartbeat_interval",
            reasons.INVALID_HEARTBEAT,
            f"a duration between 0 and {MAX_HEARTBEAT_S:.0f}s (below {floor}s counts as {floor}s)",
        )
    return max(floor, millis / 1000)


def _scoped_filter(request: task_service_pb2.WatchEventsRequest, caller: Caller) -> EventFilter:
    """What the request asks for, narrowed to the owners the caller may read: another
    owner's tree or task is then NOT_FOUND, exactly like one that does not exist."""
    scope = caller.read_scope
    if scope is None:
        return EventFilter(request.root_id, request.task_id, request.user_id)
    if request.user_id and request.user_id != scope:
        raise ServiceError(
            Code.PERMISSION_DENIED,
            reasons.USER_ID_NOT_CALLER,
            "user_id names another user; leave it empty (the caller's) or set it to the caller",
            metadata={"field": "user_id"},
        )
    return EventFilter(request.root_id, request.task_id, scope)


class EventStreamer:
    def __init__(
        self,
        hub: EventHub,
        log: EventLog,
        *,
        max_watchers: int,
        max_watchers_per_caller: int,
        min_heartbeat_s: float,
        max_message_bytes: int,
    ) -> None:
        self._hub = hub
        self._log = log
        self._max_watchers = max_watchers
        self._max_per_caller = max_watchers_per_caller
        self._per_caller: Counter[str] = Counter()
        self._min_heartbeat_s = min_heartbeat_s
        # Room for the message's own framing, as for the unary replies.
        self._message_bytes = min(MESSAGE_BYTES, max_message_bytes - 64 * 1024)

    async def watch(
        self,
        request: task_service_pb2.WatchEventsRequest | Malformed,
        context: Any,
        caller: Caller,
    ) -> None:
        if isinstance(request, Malformed):
            await abort(context, malformed_error(request))
        try:
            heartbeat = _validate(request, self._min_heartbeat_s)
            flt = _scoped_filter(request, caller)
            self._check_capacity(caller)
        except ServiceError as error:
            await abort(context, error)
        subscription = self._hub.subscribe(flt)
        self._per_caller[caller.user] += 1
        try:
            last = await self._start(request, flt, subscription, context)
            last = await self._replay(
                flt, last, subscription, context, check=not request.include_snapshot
            )
            await self._live(last, heartbeat, subscription, context)
        except Overflow:
            await abort(
                context,
                ServiceError(
                    Code.RESOURCE_EXHAUSTED,
                    reasons.SUBSCRIBER_TOO_SLOW,
                    "the watcher fell too far behind; resume from its last sequence",
                ),
            )
        except Closed:
            await abort(
                context,
                ServiceError(
                    Code.UNAVAILABLE,
                    reasons.SERVER_SHUTTING_DOWN,
                    "the server is shutting down; resume from the last sequence",
                ),
            )
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await abort(context, service_error(exc, "WatchEvents"))
        finally:
            self._hub.unsubscribe(subscription)
            self._per_caller[caller.user] -= 1
            if not self._per_caller[caller.user]:
                del self._per_caller[caller.user]

    @property
    def published_through(self) -> int:
        """Every event up to this sequence is committed and published: a read that starts
        now sees at least their changes (ListTasks' `sequence`)."""
        return self._hub.last_sequence

    def _check_capacity(self, caller: Caller) -> None:
        if self._hub.subscriber_count >= self._max_watchers:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                reasons.TOO_MANY_WATCHERS,
                f"this server serves at most {self._max_watchers} watch streams; try again later",
                metadata={"limit": str(self._max_watchers), "scope": "server"},
            )
        if caller.authenticated and self._per_caller[caller.user] >= self._max_per_caller:
            raise ServiceError(
                Code.RESOURCE_EXHAUSTED,
                reasons.TOO_MANY_WATCHERS,
                f"{caller.user!r} has {self._max_per_caller} watch streams open, the most "
                "one caller may; close one first",
                metadata={"limit": str(self._max_per_caller), "scope": "caller"},
            )

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
            # Closed on the way out (a watcher leaving mid-snapshot), not when collected.
            async with contextlib.aclosing(self._log.snapshot(flt, SNAPSHOT_CHUNK)) as chunks:
                async for rows, sequence in chunks:
                    if pending is None and not rows:
                        await self._check_position(flt, 0)  # nothing to show: does it exist?
                    protos = [task_to_proto(row) for row in rows]
                    for tasks in _by_size(protos, self._message_bytes):
                        if pending is not None:
                            await self._send(context, subscription, pending)
                        pending = task_service_pb2.WatchEventsResponse(
                            snapshot=tasks, sequence=sequence
                        )
            assert pending is not None
            pending.snapshot_complete = True
            await self._send(context, subscription, pending)
            return sequence
        after = request.after_sequence
        if after > 0:
            compacted = await self._log.compacted_through(flt)
            if after < compacted:
                raise ServiceError(
                    Code.OUT_OF_RANGE,
                    reasons.EVENTS_COMPACTED,
                    f"events up to {compacted} were pruned; resume after {compacted} "
                    "or start again from a snapshot",
                    metadata={"oldest_sequence": str(compacted + 1)},
                )
        return after

    async def _check_position(self, flt: EventFilter, after: int) -> None:
        """Refuse a watch of what does not exist (NOT_FOUND), or from beyond the log's head
        (the stream would wait silently for events that may never come: a sequence kept
        from another server's database, or a typo). Asked only when the first read found
        nothing, so that a watch of something with history costs no extra query."""
        known, head = await self._log.standing(flt)
        if not known:
            field = "root_id" if flt.root_id else "task_id"
            raise not_found(reasons.TASK_NOT_FOUND, "task", flt.root_id or flt.task_id, field)
        if after > head:
            raise ServiceError(
                Code.OUT_OF_RANGE,
                reasons.SEQUENCE_AHEAD,
                f"after_sequence {after} is beyond the newest event, {head}; resume "
                "from a sequence this server sent",
                [FieldViolation("after_sequence", f"beyond {head}", reasons.SEQUENCE_AHEAD)],
                metadata={"head_sequence": str(head)},
            )

    async def _replay(
        self,
        flt: EventFilter,
        last: int,
        subscription: Subscription,
        context: Any,
        *,
        check: bool,
    ) -> int:
        while True:
            events = await self._log.after(flt, last, REPLAY_PAGE)
            if check and not events:
                await self._check_position(flt, last)
            check = False
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
        for chunk in _event_runs(events, self._message_bytes):
            await self._send(context, subscription, events_response(chunk))
        return events[-1].sequence

    async def _send(
        self,
        context: Any,
        subscription: Subscription,
        message: task_service_pb2.WatchEventsResponse | bytes,
    ) -> None:
        """Write one message, giving up once the subscription overflows: a reader that
        stopped reading blocks the write, and must not hold the hub's memory meanwhile."""
        if subscription.overflowed:
            raise Overflow
        write = asyncio.ensure_future(context.write(message))
        # If the stream is cancelled meanwhile, nobody awaits the write: retrieve its
        # outcome so a client leaving mid-write is not logged as an error.
        write.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Woken by whichever comes first, the write or an overflow: one future and two
        # callbacks (asyncio.wait on the write and a task waiting for an Event cost
        # about twice as much: 25 against 13 us a message, measured alone).
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        write.add_done_callback(wake)
        subscription.on_overflow = wake
        try:
            await woken
        finally:
            subscription.on_overflow = None
        if write.done():
            write.result()
            return
        # Cut off with a message in flight. gRPC takes the stream's status only after
        # that message (a status sent beside it is refused, and the stream would hang
        # without one), so the hub lets go of the subscription and the message may
        # finish, for a reader that reads slowly, within a grace; one that stopped
        # reading altogether is left there.
        self._hub.unsubscribe(subscription)
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(write), CUT_OFF_GRACE_S)
        finally:
            if not write.done():
                write.cancel()
        raise Overflow


def _by_size(tasks: list[Any], budget: int) -> Iterator[list[Any]]:
    """Tasks cut into runs of at most `budget` bytes (at least one task each)."""
    run: list[Any] = []
    size = 0
    for task in tasks:
        weight = task.ByteSize()
        if run and size + weight > budget:
            yield run
            run, size = [], 0
        run.append(task)
        size += weight
    yield run


def _event_runs(events: Sequence[Event], budget: int) -> Iterator[Sequence[Event]]:
    """Events cut into runs of at most EVENTS_PER_MESSAGE and `budget` bytes (at least
    one event each)."""
    start = size = 0
    for index, event in enumerate(events):
        weight = len(event_field(event))
        if index > start and (index - start >= EVENTS_PER_MESSAGE or size + weight > budget):
            yield events[start:index]
            start, size = index, 0
        size += weight
    yield events[start:]
