"""Hand-assembled WatchEventsResponse bytes.

A response is `repeated TaskEvent events = 1` followed by `int64 sequence = 3`. Each
event's field bytes are encoded once and cached, so a response for any watcher is a join
of cached chunks: fan-out to many watchers costs no protobuf serialisation per watcher.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskgrove_server.events.event import Event

_EVENTS_TAG = b"\x0a"  # field 1, length-delimited
_SEQUENCE_TAG = b"\x18"  # field 3, varint


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
    if event.wire is None:
        body = event.proto().SerializeToString()
        event.wire = _EVENTS_TAG + varint(len(body)) + body
    return event.wire


def events_response(events: Sequence[Event]) -> bytes:
    """A WatchEventsResponse carrying `events`, resumable after the last one."""
    parts = [event_field(event) for event in events]
    parts.append(_SEQUENCE_TAG + varint(events[-1].sequence))
    return b"".join(parts)
