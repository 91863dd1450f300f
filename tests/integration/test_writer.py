"""The group-commit writer on a real SQLite file: batching, guards, events, and what a
refused or failed commit does (only its own request fails; nothing of it is published)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove.domain import reasons
from taskgrove_server.clock import now_us
from taskgrove_server.errors import ServiceError
from taskgrove_server.events.event import Event
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.migrations import migrate
from taskgrove_server.storage.records import StateChange, TaskRow
from taskgrove_server.storage.schema import task_events, tasks
from taskgrove_server.storage.sql_writes import SqlWrites
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import InsertTasks, UpdateState

from tests.conftest import pg_dsn
from tests.support.wal import LARGEST_WAL_BYTES, wal_state


def task_row(task_id: str, name: str | None = None) -> TaskRow:
    now = now_us()
    return TaskRow(
        id=task_id, parent_id=None, root_id=task_id, user_id="u", name=name or task_id,
        executor="sleep_executor", priority=2, dependencies=[], inputs={}, params={},
        status="pending", execution_requested=False, result=None, error=None, progress=0.0,
        progress_message="", attempt=0, max_attempts=1, retry_backoff_ms=1000,
        timeout_ms=None, original_task_id=None, has_children=False, created_us=now,
        started_us=None, updated_us=now, ended_us=None, version=1,
    )  # fmt: skip


def event(task_id: str, status: str, previous: str | None) -> Event:
    return Event(
        task_id=task_id, root_id=task_id, user_id="u", parent_id=None, name=task_id,
        type="status_changed" if previous else "created", status=status,
        previous_status=previous, progress=0.0, progress_message="", error=None, attempt=0,
        is_group=False, time_us=now_us(),
    )  # fmt: skip


def insert(task_id: str, name: str | None = None) -> InsertTasks:
    return InsertTasks([task_row(task_id, name)], [event(task_id, "pending", None)])


def change(task_id: str, status: str, expected: str) -> UpdateState:
    state = StateChange(
        task_id=task_id, expected_status=expected, status=status, execution_requested=True,
        attempt=1, result=None, error=None, progress=0.0, progress_message="",
        started_us=None, ended_us=None, updated_us=now_us(),
    )  # fmt: skip
    return UpdateState([state], [event(task_id, status, expected)], task_id)


class Recorder:
    def __init__(self) -> None:
        self.published: list[list[Event]] = []
        self.stale: list[set[str]] = []

    def statuses(self) -> list[tuple[str, str]]:
        return [(e.task_id, e.status) for batch in self.published for e in batch]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    engine = open_database(url)
    await migrate(engine)
    # The database refuses tasks named "poison" (as it would refuse a value it cannot hold).
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks WHEN NEW.name = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
            )
        )
    yield engine, url
    await engine.dispose()


async def started_writer(db: tuple[AsyncEngine, str], recorder: Recorder) -> Writer:
    engine, url = db
    writer = Writer(SqlWrites(engine, url), recorder.published.append)
    writer.on_stale = recorder.stale.append
    await writer.start()
    return writer


async def stored(engine: AsyncEngine) -> tuple[dict[str, str], list[tuple[int, str, str]]]:
    async with engine.connect() as conn:
        rows = dict((await conn.execute(select(tasks.c.id, tasks.c.status))).all())  # type: ignore[arg-type]
        events = [
            (row[0], row[1], row[2])
            for row in await conn.execute(
                select(
                    task_events.c.sequence, task_events.c.task_id, task_events.c.status
                ).order_by(task_events.c.sequence)
            )
        ]
    return rows, events


async def test_batches_guards_and_events(db: tuple[AsyncEngine, str]) -> None:
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    try:
        writer.queue(insert("a"))
        writer.queue(insert("b"))
        await writer.flush()
        # Three changes queued together commit together, events numbered in order.
        commits = writer.commits
        writer.queue(change("a", "in_progress", "pending"))
        writer.queue(change("a", "completed", "in_progress"))
        # A transition from a state the row is not in is refused, with its event.
        writer.queue(change("b", "completed", "in_progress"))
        await writer.flush()  # queued before the writer ran: one transaction
        assert writer.commits == commits + 1

        rows, events = await stored(db[0])
        assert rows == {"a": "completed", "b": "pending"}
        assert [(t, s) for _, t, s in events] == [
            ("a", "pending"), ("b", "pending"), ("a", "in_progress"), ("a", "completed"),
        ]  # fmt: skip
        assert [seq for seq, _, _ in events] == sorted(seq for seq, _, _ in events)
        assert recorder.statuses() == [
            ("a", "pending"), ("b", "pending"), ("a", "in_progress"), ("a", "completed"),
        ]  # fmt: skip
        # The refused guard's tree is reported, so the engine reloads it.
        assert recorder.stale == [{"b"}]
    finally:
        await writer.close()


@pytest.fixture
async def pg(pg_db_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    engine = open_database(pg_db_url)
    await migrate(engine)
    yield engine, pg_db_url
    await engine.dispose()


async def test_on_postgresql_a_refused_guard_is_seen_and_stores_nothing(
    pg: tuple[AsyncEngine, str],
) -> None:
    """asyncpg counts no executemany: the changes go as one statement that names the
    tasks it changed (storage/state_updates_pg.py)."""
    recorder = Recorder()
    writer = await started_writer(pg, recorder)
    try:
        for task_id in ("a", "b", "c"):
            writer.queue(insert(task_id))
        await writer.flush()
        commits = writer.commits
        writer.queue(change("a", "in_progress", "pending"))
        writer.queue(change("a", "completed", "in_progress"))  # folded with the one above
        writer.queue(change("b", "completed", "in_progress"))  # refused: b is pending
        writer.queue(change("c", "in_progress", "pending"))
        writer.queue(change("c", "failed", "pending"))  # does not follow: refused
        await writer.flush()
        assert writer.commits == commits + 1

        rows, events = await stored(pg[0])
        assert rows == {"a": "completed", "b": "pending", "c": "in_progress"}
        assert [(t, s) for _, t, s in events] == [
            ("a", "pending"), ("b", "pending"), ("c", "pending"),
            ("a", "in_progress"), ("a", "completed"), ("c", "in_progress"),
        ]  # fmt: skip
        assert recorder.statuses() == [(t, s) for _, t, s in events]
        assert sorted(map(sorted, recorder.stale)) == [["b", "c"]]
        async with pg[0].connect() as conn:
            versions = dict((await conn.execute(select(tasks.c.id, tasks.c.version))).all())  # type: ignore[arg-type]
        assert versions == {"a": 3, "b": 1, "c": 2}  # one per change applied
        # A batch of one or two tasks takes another statement: refused all the same.
        writer.queue(change("b", "failed", "in_progress"))
        writer.queue(change("c", "completed", "in_progress"))
        await writer.flush()
        rows, events = await stored(pg[0])
        assert rows == {"a": "completed", "b": "pending", "c": "completed"}
        assert [(t, s) for _, t, s in events][6:] == [("c", "completed")]
        assert recorder.stale[1:] == [{"b"}]
    finally:
        await writer.close()


async def test_on_postgresql_a_connection_lost_while_idle_is_replaced_unseen(
    pg: tuple[AsyncEngine, str],
) -> None:
    """The writer keeps its connection (no ping per batch): one that died between two
    batches (a restart, a terminated backend) is replaced within the batch, which
    commits as if nothing happened; storage is never reported unavailable."""
    import asyncpg

    recorder = Recorder()
    writer = await started_writer(pg, recorder)
    availability: list[bool] = []
    writer.on_availability = availability.append
    try:
        writer.queue(insert("a"))
        await writer.flush()
        database = make_url(pg[1]).database
        killer = await asyncpg.connect(pg_dsn(pg[1]), timeout=10)
        try:
            ended = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await killer.close()
        assert ended >= 1  # the writer's connection among them
        writer.queue(insert("b"))
        await writer.flush()
        rows, _ = await stored(pg[0])
        assert rows == {"a": "pending", "b": "pending"}
        assert False not in availability
    finally:
        await writer.close()


async def test_a_refused_write_fails_only_its_own_request(db: tuple[AsyncEngine, str]) -> None:
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    gate = asyncio.Event()

    async def request(task_id: str, name: str | None = None) -> None:
        await gate.wait()
        writer.queue(insert(task_id, name))
        await writer.flush()

    try:
        # Eleven requests in one batch; the database refuses one of them.
        names = {f"t{i}": None for i in range(10)} | {"bad": "poison"}
        calls = {
            task_id: asyncio.create_task(request(task_id, name)) for task_id, name in names.items()
        }
        await asyncio.sleep(0)
        gate.set()
        done = await asyncio.gather(*calls.values(), return_exceptions=True)
        outcome = dict(zip(calls, done, strict=True))
        error = outcome.pop("bad")
        assert isinstance(error, ServiceError), error
        assert error.reason == reasons.WRITE_REFUSED
        assert all(result is None for result in outcome.values()), outcome

        rows, events = await stored(db[0])
        assert set(rows) == {f"t{i}" for i in range(10)}
        assert {task_id for _, task_id, _ in events} == set(rows)
        # Nothing of the refused write reached a watcher; the rest did, each once.
        published = [task_id for task_id, _ in recorder.statuses()]
        assert sorted(published) == sorted(rows)
        assert recorder.stale == [{"bad"}]
        # The writer goes on.
        writer.queue(insert("after"))
        await writer.flush()
        assert "after" in (await stored(db[0]))[0]
    finally:
        await writer.close()


async def test_a_refused_write_queued_by_a_callback_fails_no_request(
    db: tuple[AsyncEngine, str],
) -> None:
    """Writes queued outside any request (timers, after-commit callbacks) belong to none:
    a refusal of one is reported as stale trees, and every waiter succeeds."""
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    try:
        asyncio.get_running_loop().call_soon(writer.queue, insert("bad", "poison"))
        await asyncio.sleep(0)
        writer.queue(insert("good"))
        await writer.flush()  # does not raise: the refused write was not this task's
        assert set((await stored(db[0]))[0]) == {"good"}
        assert recorder.stale == [{"bad"}]
    finally:
        await writer.close()


async def test_a_refusal_reaches_the_requests_next_flush_in_a_later_batch(
    db: tuple[AsyncEngine, str],
) -> None:
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    try:

        async def request() -> None:
            writer.queue(insert("bad", "poison"))
            await asyncio.sleep(0.05)  # a read, say: the batch commits meanwhile
            await writer.flush()

        with pytest.raises(ServiceError) as refused:
            await asyncio.create_task(request())
        assert refused.value.reason == reasons.WRITE_REFUSED
        await writer.flush()  # another request's flush is not concerned
    finally:
        await writer.close()


async def test_the_wal_is_checkpointed_and_reused_while_commits_go_on(
    db: tuple[AsyncEngine, str],
) -> None:
    """Through the writer, paused between commits and then back to back: the log is
    checkpointed and started over each time, instead of growing with every commit."""
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    wal = Path(db[1].removeprefix("sqlite+aiosqlite:///") + "-wal")
    try:

        async def commits(prefix: str, count: int) -> int:
            largest = 0
            for i in range(count):
                writer.queue(insert(f"{prefix}{i}"))
                await writer.flush()
                largest = max(largest, wal_state(wal)[0])
            return largest

        await commits("a", 300)
        _, first_resets = wal_state(wal)
        for attempt in range(200):  # bounded: 10 s
            await commits(f"b{attempt}-", 1)
            if wal_state(wal)[1] > first_resets:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the WAL was never checkpointed and restarted")
        _, resets = wal_state(wal)
        # About 11 pages a commit (measured): 300 of them are over three targets' worth.
        largest = await commits("c", 300)
        assert wal_state(wal)[1] > resets
        assert largest < LARGEST_WAL_BYTES
        assert len((await stored(db[0]))[0]) >= 601
    finally:
        await writer.close()


async def test_what_a_commit_sets_going_joins_the_next_batch(
    db: tuple[AsyncEngine, str],
) -> None:
    """After each commit the loop gets a turn before the writer takes the next batch, so
    what the commit's callbacks set going (the executors its claims launched) queues its
    writes beside the callbacks' own (the next claims). A commit on the loop gives it no
    turn by itself."""
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    launched: list[asyncio.Task[None]] = []
    try:

        async def executor() -> None:
            writer.queue(insert("completion"))
            await writer.flush()

        def after_claim() -> None:
            writer.queue(insert("next-claim"))
            launched.append(asyncio.create_task(executor()))

        writer.queue(insert("claim"))
        writer.after_commit(after_claim)
        await writer.flush()
        await asyncio.wait_for(launched[0], 10)
        batches = [{event.task_id for event in batch} for batch in recorder.published]
        assert batches == [{"claim"}, {"next-claim", "completion"}]
    finally:
        await writer.close()


async def test_a_commit_waits_out_another_connections_write_lock(
    db: tuple[AsyncEngine, str],
) -> None:
    """A small batch commits on the event loop without waiting for locks; when another
    connection holds the write lock, it goes to the writer's thread and waits there, and
    the loop keeps serving meanwhile."""
    recorder = Recorder()
    writer = await started_writer(db, recorder)
    path = db[1].removeprefix("sqlite+aiosqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    read_done = threading.Event()
    released_after_read: list[bool] = []

    def release() -> None:
        # Only once the loop answered a read: a commit waiting for the lock on the loop
        # (SQLite's 10 s busy timeout) would hold the read back past this 5 s wait.
        released_after_read.append(read_done.wait(5))
        blocker.execute("COMMIT")

    releaser = threading.Thread(target=release)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        releaser.start()
        writer.queue(insert("waited"))
        flushed = asyncio.create_task(writer.flush())
        await asyncio.sleep(0.05)  # the writer tries its commit first
        # Meanwhile the loop serves others: a read answers, and sees nothing of the
        # waiting batch.
        assert "waited" not in (await stored(db[0]))[0]
        read_done.set()
        assert not flushed.done()
        await asyncio.wait_for(flushed, 10)
        await asyncio.to_thread(releaser.join, 10)
        assert released_after_read == [True]
        assert "waited" in (await stored(db[0]))[0]
    finally:
        blocker.close()
        await writer.close()
