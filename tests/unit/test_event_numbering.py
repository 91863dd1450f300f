"""Events are numbered by the backend at commit (no gap after a retried or split batch),
and the feed publishes every committed event to the hub once, in order."""

from __future__ import annotations

import asyncio

import pytest
from support.events import progress_event
from support.waiting import until
from taskgrove_server.errors import ServiceError
from taskgrove_server.events.event import Event, EventFilter
from taskgrove_server.events.hub import EventHub
from taskgrove_server.storage.event_feed import EventFeed
from taskgrove_server.storage.memory import MemoryStore
from taskgrove_server.storage.notifications import Notifications, libpq_dsn
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import AppendTaskLog, Write


def event(task_id: str, sequence: int = 0) -> Event:
    return progress_event(task_id, sequence=sequence)


def carrying(*task_ids: str) -> AppendTaskLog:
    return AppendTaskLog("t", 1, [], events=[event(task_id) for task_id in task_ids])


async def test_a_retried_and_a_split_batch_number_without_gaps() -> None:
    memory = MemoryStore()
    published: list[Event] = []
    writer = Writer(memory, published.extend)
    await writer.start()
    memory.fail_next(2)  # transient: the same batch is retried
    for name in ("a", "b"):
        writer.queue(carrying(f"{name}1", f"{name}2"))
    await writer.flush()
    poison = carrying("x1", "x2")
    memory.refuse = lambda write: write is poison
    writes: list[Write] = [carrying("c1"), poison, carrying("d1", "d2"), carrying("e1")]
    for write in writes:
        writer.queue(write)
    with pytest.raises(ServiceError, match="WRITE_REFUSED"):
        await writer.flush()  # this task queued the refused write
    names = [e.task_id for e in published]
    assert names == ["a1", "a2", "b1", "b2", "c1", "d1", "d2", "e1"]
    assert [e.sequence for e in published] == list(range(1, 9))
    assert [e.sequence for e in memory.events] == list(range(1, 9))
    assert writer.last_sequence == 8
    await writer.close()


class FakeLog:
    """What the feed reads: stored events (every replica's), and the counter row."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reads: list[tuple[int, int | None]] = []
        self.gate: asyncio.Event | None = None

    async def after(
        self, flt: EventFilter, after_sequence: int, limit: int, through: int | None = None
    ) -> list[Event]:
        self.reads.append((after_sequence, through))
        if self.gate is not None:
            await self.gate.wait()
        found = [
            e
            for e in self.events
            if e.sequence > after_sequence and (through is None or e.sequence <= through)
        ]
        return [event(e.task_id, e.sequence) for e in found[:limit]]  # copies, as from SQL

    async def head(self) -> int:
        return self.events[-1].sequence if self.events else 0


def store(log: FakeLog, *sequences: int) -> list[Event]:
    stored = [event(f"t{s}", s) for s in sequences]
    log.events.extend(stored)
    return stored


async def test_the_feed_publishes_each_committed_event_once_in_order() -> None:
    hub = EventHub()
    everything = hub.subscribe(EventFilter())
    log = FakeLog()
    feed = EventFeed(hub, log, poll_s=3600)  # type: ignore[arg-type]
    store(log, 1, 2)
    feed.start(2)
    try:
        # Contiguous local commit: published at once, nothing read.
        feed.local(store(log, 3, 4))
        assert hub.last_sequence == 4 and log.reads == []
        # Another replica committed 5..6 before this one's 7..8: those are read first.
        store(log, 5, 6)
        local = store(log, 7, 8)
        feed.local(local)
        await until(lambda: feed.published_through == 8)
        assert log.reads == [(4, 6)]
        # A notification of what was published already reads nothing.
        feed.notified("8")
        # Others' commits announced, and a local commit arriving while they are read.
        store(log, 9, 10)
        log.gate = asyncio.Event()
        feed.notified("10")
        await until(lambda: len(log.reads) == 2)
        feed.local(store(log, 11))
        log.gate.set()
        await until(lambda: feed.published_through == 11)
        # Announced twice and read back beside a local commit: still once.
        store(log, 12)
        feed.notified("12")
        feed.notified("12")
        await until(lambda: feed.published_through == 12)
        feed.local([e for e in log.events if e.sequence == 12])
        feed.notified("bogus")
        batches = []
        while everything._batches:
            batches.append(everything._batches.popleft())
        got = [e.sequence for batch in batches for e in batch]
        assert got == list(range(3, 13))
        assert hub.last_sequence == 12
        # The local events themselves were published, not copies read back.
        assert any(e is local[0] for batch in batches for e in batch)
    finally:
        await feed.close()


async def test_the_feed_skips_what_was_pruned_and_polls() -> None:
    hub = EventHub()
    log = FakeLog()
    feed = EventFeed(hub, log, poll_s=0.01)  # type: ignore[arg-type]
    feed.start(0)
    try:
        store(log, 3)  # 1 and 2 were pruned; no notification came: the poll finds 3
        await until(lambda: feed.published_through == 3)
        assert hub.last_sequence == 3
    finally:
        await feed.close()


async def test_without_a_log_the_feed_passes_through() -> None:
    hub = EventHub()
    feed = EventFeed(hub, None)
    feed.start(5)
    assert hub.last_sequence == 5
    feed.local([event("a", 6), event("b", 7)])
    assert feed.published_through == hub.last_sequence == 7
    await feed.close()


def test_notifications_exist_only_on_postgresql() -> None:
    assert Notifications.for_url("sqlite+aiosqlite:////tmp/x.db") is None
    assert libpq_dsn("postgresql+asyncpg://u:p@127.0.0.1:5432/db") == (
        "postgresql://u:p@127.0.0.1:5432/db"
    )
    assert Notifications.for_url("postgresql+asyncpg://u:p@127.0.0.1/db") is not None
