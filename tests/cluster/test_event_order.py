"""Events across replicas sharing one PostgreSQL database: one total order, numbered in
commit order, gap-free for every watcher on every replica (ARCHITECTURE.md, "Events
across replicas"). Skipped unless TASKGROVE_TEST_PG_URL is set.

The truth is the `task_events` table, read with asyncpg outside the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from conftest import pg_dsn
from support.events import progress_event
from support.waiting import WAIT_S, until, wait_finished
from taskgrove import AsyncClient, Snapshot, TaskEvent
from taskgrove_server.events.event import Event
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.migrations import migrate
from taskgrove_server.storage.notifications import APPLICATION_NAME, Notifications
from taskgrove_server.storage.sql_writes import SqlWrites
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import AppendTaskLog, Write
from taskgrove_server.testing import ServerProcess

Row = tuple[int, str, str, str]
"""(sequence, task_id, type, status) of one stored or watched event."""


async def stored(db_url: str, root_id: str | None = None) -> list[Row]:
    connection = await asyncpg.connect(pg_dsn(db_url), timeout=10)
    try:
        query = "SELECT sequence, task_id, type, status FROM task_events"
        args: list[Any] = []
        if root_id is not None:
            query += " WHERE root_id = $1"
            args.append(root_id)
        rows = await connection.fetch(query + " ORDER BY sequence", *args)
    finally:
        await connection.close()
    return [(r["sequence"], r["task_id"], r["type"], r["status"]) for r in rows]


async def execute(db_url: str, query: str, *args: Any) -> None:
    connection = await asyncpg.connect(pg_dsn(db_url), timeout=10)
    try:
        await connection.execute(query, *args)
    finally:
        await connection.close()


def event(root_id: str, index: int, name: str = "e") -> Event:
    return progress_event(f"{root_id}-{index}", root_id=root_id, name=name, time_us=index)


# ---------------------------------------------------------------------------- writers


async def test_writers_on_one_database_number_events_in_commit_order(pg_db_url: str) -> None:
    """Three writers (as three replicas would have) commit interleaved batches, one with a
    write the database refuses (the batch is split): the stored sequences are 1..N, each
    writer's increase in the order it queued them, and what each published is what it
    stored, numbered."""
    db = open_database(pg_db_url)
    await migrate(db)
    await db.dispose()
    engines = [open_database(pg_db_url) for _ in range(3)]
    published: dict[str, list[Event]] = {f"w{i}": [] for i in range(3)}
    writers = {
        name: Writer(SqlWrites(engine, pg_db_url), published[name].extend)
        for name, engine in zip(published, engines, strict=True)
    }
    for writer in writers.values():
        await writer.start()
    rng = random.Random(7)
    queued: dict[str, list[Event]] = {name: [] for name in writers}

    async def produce(name: str, writer: Writer) -> None:
        count = 0
        for round_ in range(60):
            for _ in range(rng.randint(1, 4)):
                events = [event(name, count + i) for i in range(rng.randint(0, 5))]
                count += len(events)
                poison = name == "w1" and round_ == 30 and not events
                if poison:  # longer than the column: PostgreSQL refuses it
                    events = [event(name, -1, name="x" * 300)]
                else:
                    queued[name].extend(events)
                write: Write = AppendTaskLog(f"{name}-log", 1, [], events=events)
                writer.queue(write)
            with contextlib.suppress(Exception):
                await writer.flush()
            await asyncio.sleep(rng.random() / 500)

    try:
        await asyncio.gather(*(produce(name, w) for name, w in writers.items()))
    finally:
        for writer in writers.values():
            await writer.close()
        for engine in engines:
            await engine.dispose()
    rows = await stored(pg_db_url)
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == sum(len(events) for events in queued.values())
    by_task = {row[1]: row[0] for row in rows}
    for name, events in queued.items():
        sequences = [event.sequence for event in published[name]]
        assert published[name] == events  # the very objects, in queue order, none refused
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        assert sequences == [by_task[e.task_id] for e in events]
        assert writers[name].last_sequence == (sequences[-1] if sequences else 0)


async def test_notifications_reconnect_and_tell_listeners(pg_db_url: str) -> None:
    """LISTEN survives its connection being killed: the hook runs, later NOTIFYs arrive."""
    dsn = pg_dsn(pg_db_url)
    notifications = Notifications(dsn, ping_s=0.2)
    got: list[str] = []
    reconnected: list[bool] = []
    await notifications.start()
    await notifications.listen("tg_test", got.append, on_reconnect=lambda: reconnected.append(True))
    other = await asyncpg.connect(dsn, timeout=10)
    try:
        await other.execute("SELECT pg_notify('tg_test', 'one')")
        await until(lambda: got == ["one"])
        await other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND usename = current_user"
        )
        await until(lambda: reconnected == [True])
        await other.execute("SELECT pg_notify('tg_test', 'two')")
        await until(lambda: got == ["one", "two"])
        # Closing the old connection is not a drop: no second reconnection follows.
        await other.execute("SELECT pg_notify('tg_test', 'three')")
        await until(lambda: got == ["one", "two", "three"])
        assert notifications.reconnects == 1 and reconnected == [True]
    finally:
        await other.close()
        await notifications.close()


# ---------------------------------------------------------------------------- replicas

REPLICAS = 3
TREES_PER_REPLICA = 2
TASKS_PER_TREE = 150


@pytest.fixture
def replicas(pg_db_url: str) -> Iterator[list[ServerProcess]]:
    """Three `taskgrove serve` processes on one database (all started before any tree)."""
    started: list[ServerProcess] = []
    try:
        for _ in range(REPLICAS):
            process = ServerProcess(pg_db_url)
            process.start()
            started.append(process)
        yield started
    finally:
        for process in started:
            process.stop()


class Watcher:
    """One SDK watch in the background, recording every event it yields."""

    def __init__(self, client: AsyncClient, **flt: Any) -> None:
        self.events: list[TaskEvent] = []
        self.snapshot: Snapshot | None = None
        self._stream = client.watch(max_reconnects=0, heartbeat_interval=0.2, **flt)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for item in self._stream:
            if isinstance(item, TaskEvent):
                self.events.append(item)
            elif isinstance(item, Snapshot):
                self.snapshot = item

    def rows(self) -> list[Row]:
        return [(e.sequence, e.task_id, e.type, e.status) for e in self.events]

    def seen_through(self, sequence: int) -> bool:
        """Whether the events, or the snapshot they follow, reach `sequence`: a snapshot
        taken after the last event is followed by none."""
        if self._task.done():
            self._task.result()  # a failed stream fails the test at once
        last = self.events[-1].sequence if self.events else 0
        return max(last, self.snapshot.sequence if self.snapshot else 0) >= sequence

    async def wait_through(self, sequence: int) -> None:
        """Until `seen_through(sequence)`; failing, says how far the watcher got."""
        try:
            await until(lambda: self.seen_through(sequence), limit_s=WAIT_S)
        except TimeoutError:
            snapshot = self.snapshot.sequence if self.snapshot else None
            last = self.events[-1].sequence if self.events else None
            pytest.fail(
                f"not seen through {sequence} in {WAIT_S} s: snapshot at {snapshot},"
                f" {len(self.events)} events, the last at {last}"
            )

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stream.aclose()


@contextlib.asynccontextmanager
async def clients_of(replicas: list[ServerProcess]) -> AsyncIterator[list[AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(AsyncClient(r.address)) for r in replicas]


def sleep_tree(tag: str, n: int) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [{"id": "root", "name": f"root-{tag}"}]
    for index in range(n):
        specs.append(
            {
                "id": f"c{index}",
                "name": f"{tag}-c{index}",
                "executor": "sleep_executor",
                "parent_id": "root",
                "inputs": {"seconds": (index % 5) / 1000},
                "dependencies": [f"c{index - 1}"] if index % 4 == 3 else [],
            }
        )
    return specs


async def test_every_watcher_on_every_replica_sees_every_event_once_in_order(
    pg_db_url: str, replicas: list[ServerProcess]
) -> None:
    async with clients_of(replicas) as clients:
        everything = [Watcher(client) for client in clients]
        by_root: list[tuple[str, Watcher]] = []
        snapshots: list[Watcher] = []

        async def run_trees(index: int, client: AsyncClient) -> list[str]:
            roots = []
            for tree in range(TREES_PER_REPLICA):
                created = await client.create_task_tree(
                    sleep_tree(f"r{index}t{tree}", TASKS_PER_TREE), execute=True, basic=True
                )
                root_id = created["root"].id
                roots.append(root_id)
                # Watched on another replica than the one running it, and on its own.
                for other in (clients[(index + 1) % REPLICAS], client):
                    by_root.append((root_id, Watcher(other, root_id=root_id)))
                if index == 0:  # taken on a replica that runs none of it
                    snapshots.append(Watcher(clients[2], include_snapshot=True))
                    if tree == 0:  # mid-run for sure: this replica's next tree waits
                        await until(lambda: snapshots[0].snapshot is not None)
            for root_id in roots:
                await wait_finished(client, root_id, limit_s=60)
            return roots

        async def cut_listeners() -> None:
            """Once trees run, end every replica's LISTEN connection: what was sent
            meanwhile comes by the reconnection's re-read or the poll."""
            await until(lambda: len(by_root) >= REPLICAS * 2)
            await execute(
                pg_db_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )

        try:
            await asyncio.gather(cut_listeners(), *(run_trees(i, c) for i, c in enumerate(clients)))
            rows = await stored(pg_db_url)
            assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
            head = rows[-1][0]
            for watcher in everything:
                await watcher.wait_through(head)
                assert watcher.rows() == rows
            for root_id, watcher in by_root:
                expected = await stored(pg_db_url, root_id)
                last = expected[-1][0]
                await watcher.wait_through(last)
                assert watcher.rows() == expected

            await until(  # every replica noticed its LISTEN connection end, and made it again
                lambda: all("notification connection dropped" in r.log_tail(200) for r in replicas)
            )

            # A snapshot taken on the third replica, then the events after it.
            first = snapshots[0].snapshot
            assert first is not None and first.sequence < head  # events came after it
            for watcher in snapshots:
                await watcher.wait_through(head)
                assert watcher.snapshot is not None
                after = watcher.snapshot.sequence
                assert watcher.rows() == [row for row in rows if row[0] > after]
                shown = {task.id for task in watcher.snapshot.tasks}
                assert shown == {row[1] for row in rows if row[0] <= after and row[2] == "created"}

            # A watcher on the third replica resuming from the middle sees the rest.
            middle = rows[len(rows) // 2][0]
            resumed = Watcher(clients[2], after_sequence=middle)
            try:
                await resumed.wait_through(head)
                assert resumed.rows() == [row for row in rows if row[0] > middle]
            finally:
                await resumed.close()
        finally:
            for watcher in [*everything, *snapshots, *(w for _, w in by_root)]:
                await watcher.close()
