"""Events on the wire: `TaskEvent` messages and hand-assembled WatchEventsResponse bytes.

A response is `repeated TaskEvent events = 1` followed by `int64 sequence = 3`. Each
event's field bytes are encoded once and cached on the event, so a response for any
watcher is a join of cached chunks: fan-out to many watchers costs no protobuf
serialisation per watcher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from taskgrove.domain import wire
from taskgrove.v1 import event_pb2, task_pb2

from taskgrove_server.api.convert import task_error
from taskgrove_server.events import event as events
from taskgrove_server.events.event import Event

_TYPES: Final = {
    events.CREATED: event_pb2.TASK_EVENT_TYPE_CREATED,
    events.STATUS_CHANGED: event_pb2.TASK_EVENT_TYPE_STATUS_CHANGED,
    events.PROGRESS: event_pb2.TASK_EVENT_TYPE_PROGRESS,
    events.DELETED: event_pb2.TASK_EVENT_TYPE_DELETED,
}
_EVENTS_TAG = b"\x0a"  # field 1, length-delimited
_SEQUENCE_TAG = b"\x18"  # field 3, varint


def event_to_proto(event: Event) -> event_pb2.TaskEvent:
    message = event_pb2.TaskEvent(
        sequence=event.sequence,
        task_id=event.task_id,
        root_id=event.root_id,
        user_id=event.user_id,
        parent_id=event.parent_id or "",
        name=event.name,
        type=_TYPES[event.type],
        status=wire.status_to_proto(event.status),
        previous_status=wire.status_to_proto(event.previous_status)
        if event.previous_status
        else task_pb2.TASK_STATUS_UNSPECIFIED,
        progress=event.progress,
        progress_message=event.progress_message,
        attempt=event.attempt,
        is_group=event.is_group,
    )
    message.time.FromMicroseconds(event.time_us)
    if event.error:
        message.error.CopyFrom(task_error(event.error))
    return message


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def event_field(event: Event) -> bytes:
    """The event as one `events` entry of a WatchEventsResponse (cached on the event)."""
    if event.encoded is None:
        body = event_to_proto(event).SerializeToString()
        event.encoded = _EVENTS_TAG + varint(len(body)) + body
    return event.encoded


def events_response(events_: Sequence[Event]) -> bytes:
    """A WatchEventsResponse carrying `events_`, resumable after the last one."""
    parts = [event_field(event) for event in events_]
    parts.append(_SEQUENCE_TAG + varint(events_[-1].sequence))
    return b"".join(parts)
