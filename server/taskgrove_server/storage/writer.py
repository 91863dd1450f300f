"""Group commit: every write of the server goes through one writer, which commits
whatever is pending in one transaction as soon as it is free.

Callers queue rows and statements, then either await `flush()` (an RPC that must answer
only after its change is durable) or register an `after_commit` callback (the engine
starts an executor only once its claim is committed). Callbacks run in commit order.

Every state change carries its `Event`; the writer numbers a batch's events in commit
order, stores them in the same transaction, and publishes them only after the commit, so a
watcher never sees a change that could still be lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.events.event import Event
from taskgrove_server.storage.bulk import BulkStatement, json_columns
from taskgrove_server.storage.committer import Committer, create_committer
from taskgrove_server.storage.schema import (
    event_compaction,
    task_dependencies,
    task_events,
    tasks,
)

log = logging.getLogger(__name__)

Statement = Callable[[Connection], None]
"""A write run inside a batch's transaction (synchronous: see storage/committer.py)."""

# One statement shape for every state change, so a batch is a single executemany.
# The status guard makes a transition apply only from the state the engine saw.
_UPDATE_STATE = (
    tasks.update()
    .where(tasks.c.id == bindparam("b_id"), tasks.c.status == bindparam("b_expected"))
    .values(
        status=bindparam("status"),
        execution_requested=bindparam("execution_requested"),
        attempt=bindparam("attempt"),
        result=bindparam("result"),
        error=bindparam("error"),
        progress=bindparam("progress"),
        progress_message=bindparam("progress_message"),
        started_us=bindparam("started_us"),
        ended_us=bindparam("ended_us"),
        updated_us=bindparam("updated_us"),
        version=tasks.c.version + 1,
    )
)
_UPDATE = BulkStatement(_UPDATE_STATE, json_keys=("result", "error"))
_INSERT_TASKS = BulkStatement(tasks.insert(), json_keys=json_columns(tasks))
_INSERT_EDGES = BulkStatement(task_dependencies.insert())
_INSERT_EVENTS = BulkStatement(task_events.insert(), json_keys=json_columns(task_events))


@dataclass(slots=True)
class _Batch:
    inserts: list[Mapping[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    update_events: list[Event | None] = field(default_factory=list)
    """The event of each update (same index)."""
    events: list[Event] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def has_work(self) -> bool:
        return bool(self.inserts or self.statements or self.updates or self.events or self.waiters)


class Writer:
    def __init__(
        self,
        engine: AsyncEngine,
        publish: Callable[[list[Event]], None] | None = None,
        *,
        url: str | None = None,
    ) -> None:
        self._engine = engine
        self._committer: Committer = create_committer(url or str(engine.url), engine)
        self._publish = publish
        self.last_sequence = 0
        """Sequence of the last committed event."""
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        """Transactions committed so far (for benchmarks and tests)."""

    async def start(self) -> None:
        async with self._engine.connect() as conn:
            # Never reuse a sequence, even one whose event was pruned.
            newest = await conn.scalar(select(func.max(task_events.c.sequence)))
            pruned = await conn.scalar(select(func.max(event_compaction.c.compacted_through)))
        self.last_sequence = max(newest or 0, pruned or 0)
        self._task = asyncio.create_task(self._run(), name="taskgrove-writer")

    async def close(self) -> None:
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._committer.close()

    def insert_tasks(self, rows: Sequence[Mapping[str, Any]], events: list[Event]) -> None:
        """New tasks with their `created` events and dependency index entries."""
        self._batch.inserts.extend(rows)
        self._batch.edges.extend(dependency_edges(rows))
        self._batch.events.extend(events)
        self._wake.set()

    def execute(self, statement: Statement) -> None:
        """Queue an arbitrary statement; it runs after the batch's inserts."""
        self._batch.statements.append(statement)
        self._wake.set()

    def update_state(self, row: dict[str, Any], event: Event | None) -> None:
        """Queue a guarded state update (keys: see `_UPDATE_STATE`) and its event."""
        self._batch.updates.append(row)
        self._batch.update_events.append(event)
        if event is not None:
            self._batch.events.append(event)
        self._wake.set()

    def append_events(self, events: list[Event]) -> None:
        self._batch.events.extend(events)
        self._wake.set()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once everything queued so far is committed."""
        self._batch.callbacks.append(callback)
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (raises if the commit failed)."""
        waiter = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._batch = self._batch, _Batch()
            if batch.has_work() or batch.callbacks:
                await self._commit(batch)
            del batch  # let a large batch's rows and events go while idle
            if self._closing and not self._batch.has_work() and not self._batch.callbacks:
                return

    async def _commit(self, batch: _Batch) -> None:
        first = self.last_sequence + 1
        for offset, event in enumerate(batch.events):
            event.sequence = first + offset
        try:
            rejected = await self._committer.run(lambda conn: _apply(conn, batch))
        except Exception as exc:
            log.exception("write batch failed")
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.commits += 1
        self.last_sequence += len(batch.events)
        published = batch.events
        if rejected:
            published = [event for event in batch.events if id(event) not in rejected]
        if published and self._publish is not None:
            self._publish(published)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in batch.callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")


def dependency_edges(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the reverse dependency index for tasks about to be stored."""
    return [
        {"task_id": row["id"], "depends_on": dep["id"], "required": dep["required"]}
        for row in rows
        for dep in row["dependencies"]
    ]


def _apply(conn: Connection, batch: _Batch) -> set[int]:
    """Everything of one batch, in order; returns the events (by `id()`) left out because
    their guarded update did not apply."""
    _INSERT_TASKS.executemany(conn, batch.inserts)
    _INSERT_EDGES.executemany(conn, batch.edges)
    for statement in batch.statements:
        statement(conn)
    updated = _UPDATE.executemany(conn, batch.updates)
    rejected: set[int] = set()
    # Drivers that cannot count an executemany report -1 (asyncpg).
    if 0 <= updated != len(batch.updates):
        rejected = _rejected_events(conn, batch)
        # Single writer: the engine's view was wrong. The guard kept the stored state
        # valid; the events of the changes it refused are not stored either.
        log.error(
            "guarded update applied to %s of %s rows; %s events dropped",
            updated,
            len(batch.updates),
            len(rejected),
        )
    _INSERT_EVENTS.executemany(
        conn, [event.row() for event in batch.events if id(event) not in rejected]
    )
    return rejected


def _rejected_events(conn: Connection, batch: _Batch) -> set[int]:
    """Events of the updates that did not apply (only run when some did not).

    A task's updates in one batch form a chain (each expects the status the previous one
    set). The chain applied up to its last update whose status the task holds now; the
    events of the updates after that one are refused.
    """
    ids = list({row["b_id"] for row in batch.updates})
    stored: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        query = select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(ids[start : start + 500]))
        stored.update({task_id: status for task_id, status in conn.execute(query)})
    chains: dict[str, list[tuple[str, Event | None]]] = {}
    for row, event in zip(batch.updates, batch.update_events, strict=True):
        chains.setdefault(row["b_id"], []).append((row["status"], event))
    rejected: set[int] = set()
    for task_id, chain in chains.items():
        held = stored.get(task_id)
        applied = max((i for i, (status, _) in enumerate(chain) if status == held), default=-1)
        rejected.update(id(event) for _, event in chain[applied + 1 :] if event is not None)
    return rejected
