"""Live fan-out of committed events to watchers.

The writer publishes each committed batch once, in sequence order. Subscribers are
indexed by what they filter on, so publishing costs one append per interested watcher
per batch, whatever the number of watchers of other trees. Each subscriber's buffer is
bounded: one that falls behind is dropped (and told so), never waited for.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from taskgrove_server.events.event import Event, EventFilter
from taskgrove_server.waits import wait_set


class Overflow(Exception):
    """The subscriber's buffer filled up: it read too slowly."""


class Closed(Exception):
    """The hub closed (server shutting down)."""


@dataclass(eq=False)
class Subscription:
    filter: EventFilter
    limit: int
    _batches: deque[list[Event]] = field(default_factory=deque)
    _size: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    on_overflow: Callable[[], None] | None = None
    """Called when the buffer overflows: the stream must end even while a write blocks."""
    overflowed: bool = False
    closed: bool = False

    def _offer(self, events: list[Event]) -> None:
        if self.overflowed or self.closed:
            return
        # The bound is on the backlog: one commit larger than the buffer still reaches a
        # watcher that had caught up (the batch list is shared, so it costs no copy).
        if self._size and self._size + len(events) > self.limit:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow()
            self._batches.clear()
            self._size = 0
        else:
            self._batches.append(events)
            self._size += len(events)
        self._wake.set()

    async def next_batch(self, idle_after: float | None) -> list[Event] | None:
        """All buffered events (oldest first), or None after `idle_after` seconds idle."""
        while True:
            if self.overflowed:
                raise Overflow
            if self._batches:
                merged = [event for batch in self._batches for event in batch]
                self._batches.clear()
                self._size = 0
                return merged
            if self.closed:
                raise Closed
            self._wake.clear()
            # A wake-up can race the limit: idle only if nothing arrived.
            woken = await wait_set(self._wake, idle_after)
            if not (woken or self._batches or self.overflowed or self.closed):
                return None


class EventHub:
    def __init__(self, buffer_limit: int = 50_000) -> None:
        self.buffer_limit = buffer_limit
        self.last_sequence = 0
        """Highest sequence published; everything up to it reached every subscriber."""
        self._by_root: dict[str, set[Subscription]] = {}
        self._by_task: dict[str, set[Subscription]] = {}
        self._by_user: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._observers: list[Callable[[Sequence[Event]], None]] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        indexes = (*self._by_root.values(), *self._by_task.values(), *self._by_user.values())
        return sum(len(index) for index in indexes) + len(self._everything)

    def subscribe(self, event_filter: EventFilter) -> Subscription:
        subscription = Subscription(event_filter, self.buffer_limit)
        subscription.closed = self._closed
        index, key = self._index(event_filter)
        if index is None:
            self._everything.add(subscription)
        else:
            index.setdefault(key, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        index, key = self._index(subscription.filter)
        if index is None:
            self._everything.discard(subscription)
            return
        members = index.get(key)
        if members is not None:
            members.discard(subscription)
            if not members:
                del index[key]

    def _index(self, flt: EventFilter) -> tuple[dict[str, set[Subscription]] | None, str]:
        if flt.task_id:
            return self._by_task, flt.task_id
        if flt.root_id:
            return self._by_root, flt.root_id
        if flt.user_id:
            return self._by_user, flt.user_id
        return None, ""

    def publish(self, events: Sequence[Event]) -> None:
        """Called by the writer after each commit, in sequence order."""
        if not events:
            return
        self.last_sequence = events[-1].sequence
        for index, attribute in (
            (self._by_root, "root_id"),
            (self._by_task, "task_id"),
            (self._by_user, "user_id"),
        ):
            if not index:
                continue
            grouped: dict[str, list[Event]] = defaultdict(list)
            for event in events:
                key = getattr(event, attribute)
                if key in index:
                    grouped[key].append(event)
            for key, batch in grouped.items():
                for subscription in list(index[key]):
                    flt = subscription.filter
                    # Filters on one field share the batch; combined ones are narrowed.
                    if flt == EventFilter(**{attribute: key}):
                        subscription._offer(batch)
                    elif wanted := [event for event in batch if flt.matches(event)]:
                        subscription._offer(wanted)
        if self._everything:
            shared = list(events)
            for subscription in list(self._everything):
                subscription._offer(shared)
        for observer in self._observers:
            observer(events)

    def observe(self, observer: Callable[[Sequence[Event]], None]) -> None:
        """Call `observer(events)` with every published batch (replicas: the engine
        learns of ends of tasks held elsewhere)."""
        self._observers.append(observer)

    def close(self) -> None:
        """End every stream (server shutting down)."""
        self._closed = True
        indexes = (*self._by_root.values(), *self._by_task.values(), *self._by_user.values())
        for members in (*indexes, self._everything):
            for subscription in members:
                subscription.closed = True
                subscription._wake.set()
