"""The feed: every committed event, of every replica, reaches the local hub once, in order.

`published_through` = H means every committed event up to H has been published to the
local `EventHub` (sequences follow commit order: once H is committed, so is everything
below it). Three things move H:

- a local commit numbered [a, b] (the writer's publish callback): when a == H + 1 it is
  published at once (one server: always, with no read and no added latency); otherwise
  the events in (H, a) were committed by other replicas: they are read from storage and
  published first;
- a NOTIFY on `taskgrove_events` (its payload: the last sequence a commit stored), and
- a poll of the counter row every `poll_s`, so that a lost notification only delays.

Both of the last announce a head s; the events in (H, s] are read (paged) and published.
One task does the reads; every delivery publishes only what is above H, so an event read
back and also committed here (or announced twice) is published once.

Without notifications (SQLite: one server) the feed is a plain pass-through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from taskgrove_server.events.event import Event, EventFilter
from taskgrove_server.events.hub import EventHub
from taskgrove_server.storage.event_log import EventLog
from taskgrove_server.storage.notifications import Notifications
from taskgrove_server.storage.sql_writes import EVENTS_CHANNEL
from taskgrove_server.waits import wait_set

log = logging.getLogger(__name__)

READ_PAGE = 5_000
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0
_EVERYTHING = EventFilter()


class EventFeed:
    def __init__(self, hub: EventHub, log: EventLog | None, *, poll_s: float = 1.0) -> None:
        """`log`: where other replicas' events are read (None: one server, pass-through)."""
        self._hub = hub
        self._log = log
        self._poll_s = poll_s
        self.published_through = 0
        self._target = 0
        """The highest sequence known to be committed."""
        self._local: deque[list[Event]] = deque()
        """Local commits waiting for others' events below them (ascending)."""
        self._wake = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reads = 0
        """Reads of others' events so far (for tests and benchmarks)."""
        self.origin = ""
        """This replica's id (the origin in its own commits' notifications)."""

    async def listen(self, notifications: Notifications) -> None:
        """LISTEN before the head is read (`start`), so no commit falls between."""
        await notifications.listen(EVENTS_CHANNEL, self.notified, on_reconnect=self.reread)

    def start(self, head: int) -> None:
        """Begin at `head`: the highest sequence committed when the server starts."""
        self.published_through = self._target = head
        self._hub.last_sequence = max(self._hub.last_sequence, head)
        if self._log is not None:
            self._tasks = [
                asyncio.create_task(self._run(), name="taskgrove-event-feed"),
                asyncio.create_task(self._poll(), name="taskgrove-event-poll"),
            ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # ------------------------------------------------------------------ what moves H

    def local(self, events: list[Event]) -> None:
        """The writer's publish callback: a local commit's events, numbered, ascending."""
        if self._log is None:
            self._deliver(events)
            return
        fresh = self._fresh(events)
        if not fresh:
            return  # already read back after a notification
        if fresh[0].sequence == self.published_through + 1:
            self._deliver(fresh)
            return
        self._local.append(fresh)
        self.announced(fresh[-1].sequence)

    def notified(self, payload: str) -> None:
        """A NOTIFY on `taskgrove_events`: a commit stored events up to the payload's
        sequence ("SEQUENCE ORIGIN"). This replica's own commits reach the feed through
        its writer (`local`), so their notifications are ignored: reading them back
        would cost a query per commit."""
        number, _, origin = payload.partition(" ")
        if origin and origin == self.origin:
            return
        try:
            head = int(number)
        except ValueError:
            log.warning("ignoring the notification %r on %s", payload[:40], EVENTS_CHANNEL)
            return
        self.announced(head)

    def announced(self, head: int) -> None:
        """Events up to `head` are committed."""
        if head > self._target:
            self._target = head
        if head > self.published_through:
            self._wake.set()

    def reread(self) -> None:
        """Notifications may have been missed (the connection was down): poll now."""
        self._poll_now.set()

    # ------------------------------------------------------------------ delivery

    def _fresh(self, events: list[Event]) -> list[Event]:
        through = self.published_through
        if not events or events[0].sequence > through:
            return events
        return [event for event in events if event.sequence > through]

    def _deliver(self, events: list[Event]) -> None:
        if events:
            self._hub.publish(events)
            self.published_through = events[-1].sequence

    def _passed(self, through: int) -> None:
        """Everything up to `through` was read (a pruned one may be missing): done."""
        if through > self.published_through:
            self.published_through = through
            self._hub.last_sequence = max(self._hub.last_sequence, through)

    async def _run(self) -> None:
        delay = _RETRY_FIRST_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
                delay = _RETRY_FIRST_S
            except Exception as error:  # storage down: watchers wait, nothing is skipped
                log.warning("reading other replicas' events failed, retrying: %s", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                self._wake.set()

    async def _catch_up(self) -> None:
        assert self._log is not None
        while self.published_through < self._target:
            through = self.published_through
            while self._local and self._local[0][-1].sequence <= through:
                self._local.popleft()  # read back already
            if self._local and self._local[0][0].sequence <= through + 1:
                self._deliver(self._fresh(self._local.popleft()))
                continue
            upto = self._local[0][0].sequence - 1 if self._local else self._target
            events = await self._log.after(_EVERYTHING, through, READ_PAGE, through=upto)
            self.reads += 1
            # A local commit may have been published meanwhile: only what is above it.
            self._deliver(self._fresh(events))
            if len(events) < READ_PAGE:
                self._passed(upto)
        while self._local and self._local[0][-1].sequence <= self.published_through:
            self._local.popleft()  # read back with others' events: nothing left to wait for

    async def _poll(self) -> None:
        assert self._log is not None
        while True:
            await wait_set(self._poll_now, self._poll_s)
            self._poll_now.clear()
            try:
                self.announced(await self._log.head())
            except Exception as error:
                log.debug("polling the event head failed: %s", error)
