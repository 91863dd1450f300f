"""Committing the writer's batches to SQL: the statements for each kind of `Write`.

One batch is one transaction. The hot writes (task inserts, state changes, events) of all
the batch's writes go out as one executemany each; the rest run in queue order between.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove.domain import statuses

from taskgrove_server.events.event import Event
from taskgrove_server.storage.bulk import BulkStatement, json_columns
from taskgrove_server.storage.committer import Committer, create_committer
from taskgrove_server.storage.failures import is_transient
from taskgrove_server.storage.leases import hand_over
from taskgrove_server.storage.queries import Query
from taskgrove_server.storage.records import INSERTED_COLUMNS, StateChange
from taskgrove_server.storage.schema import (
    cluster_commands,
    event_compaction,
    event_head,
    idempotency_keys,
    remote_executors,
    task_dependencies,
    task_events,
    task_logs,
    tasks,
    tree_leases,
)
from taskgrove_server.storage.state_updates_pg import update_states
from taskgrove_server.storage.writes import (
    AppendTaskLog,
    Applied,
    DeleteTasks,
    InsertTasks,
    MarkExecutionRequested,
    PruneHistory,
    ReleaseTree,
    SaveRemoteExecutor,
    StoreResponse,
    UpdateFields,
    UpdateState,
    Write,
)

# SQLite limits bound parameters per statement; stay well below it.
IN_CHUNK = 500

# One statement shape for every state change, so a batch is a single executemany.
# The status guard makes a transition apply only from the state the engine saw.
_UPDATE_STATE = BulkStatement(
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
    ),
    json_keys=("result", "error"),
)
_INSERT_TASKS = BulkStatement(tasks.insert(), json_keys=json_columns(tasks))
_INSERT_EDGES = BulkStatement(task_dependencies.insert())
_EDGE_KEYS = ("task_id", "depends_on", "required")
_INSERT_EVENTS = BulkStatement(task_events.insert(), json_keys=json_columns(task_events))

EVENTS_CHANNEL = "taskgrove_events"
"""PostgreSQL NOTIFY channel: a commit that stored events sends its last sequence."""

# PostgreSQL: the same statement announces the batch (NOTIFY is delivered at commit
# only): "SEQUENCE ORIGIN", so that the replica that committed it does not read back
# what its writer publishes anyway.
_TAKE_SEQUENCES_PG = text(
    "UPDATE event_head SET sequence = sequence + :n WHERE id = 1"
    f" RETURNING sequence, pg_notify('{EVENTS_CHANNEL}', sequence::text || ' ' || :origin)"
)

_task_values = operator.attrgetter(*INSERTED_COLUMNS)
_EVENT_COLUMNS = tuple(column.name for column in task_events.columns)
_event_values = operator.attrgetter(*_EVENT_COLUMNS)


# A StateChange's fields, in order, are the update's parameters.
_STATE_KEYS = (
    "b_id",
    "b_expected",
    "status",
    "execution_requested",
    "attempt",
    "result",
    "error",
    "progress",
    "progress_message",
    "started_us",
    "ended_us",
    "updated_us",
)
_state_values = operator.attrgetter(*(f.name for f in fields(StateChange)))


def dependency_edges(task_id: str, dependencies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the reverse dependency index of one task."""
    return [
        {"task_id": task_id, "depends_on": dep["id"], "required": dep["required"]}
        for dep in dependencies
    ]


def batch_size(writes: Sequence[Write]) -> int:
    """About how many rows a batch writes: small ones commit on the event loop."""
    size = 0
    for write in writes:
        if isinstance(write, PruneHistory):
            return sys.maxsize  # deletes however much history has aged out
        size += 1 + len(write.events)
        if isinstance(write, InsertTasks):
            size += len(write.rows)
        elif isinstance(write, UpdateState):
            size += len(write.changes)
        elif isinstance(write, MarkExecutionRequested | DeleteTasks):
            size += len(write.task_ids)
        elif isinstance(write, AppendTaskLog):
            size += len(write.lines)
    return size


Fence = Callable[[Connection, set[str], set[str]], set[str]]
"""Replicas on PostgreSQL: given the roots a batch writes and those it adds tasks under,
checks this replica's leases inside the transaction and returns the roots another
replica holds (storage/leases.py `writer_fence`)."""


@dataclass(frozen=True, slots=True)
class Numbering:
    """How a batch's events get their sequences (see `_number_events`)."""

    origin: str = ""
    """PostgreSQL: this replica's id, in the commit's NOTIFY."""
    head: int | None = None
    """SQLite: the last sequence committed; the one server numbers on from it."""


def apply_writes(
    conn: Connection,
    writes: Sequence[Write],
    fence: Fence | None = None,
    numbering: Numbering = Numbering(),
) -> Applied:
    """Everything of one batch, in order, inside the caller's transaction; with `fence`,
    nothing of the writes to trees this replica no longer holds."""
    if fence is None:
        return _apply(conn, writes, numbering)
    roots = {root_id for write in writes for root_id in write.root_ids}
    added_to = {
        write.rows[0].root_id
        for write in writes
        if isinstance(write, InsertTasks) and write.under is not None
    }
    lost = fence(conn, roots, added_to) if roots else set()
    if not lost:
        return _apply(conn, writes, numbering)
    fenced = {index for index, write in enumerate(writes) if not lost.isdisjoint(write.root_ids)}
    kept = [index for index in range(len(writes)) if index not in fenced]
    applied = _apply(conn, [writes[index] for index in kept], numbering)
    applied.rejected = {kept[index] for index in applied.rejected}
    applied.fenced, applied.lost = fenced, lost
    return applied


def _apply(conn: Connection, writes: Sequence[Write], numbering: Numbering) -> Applied:
    rows = [row for write in writes if isinstance(write, InsertTasks) for row in write.rows]
    if rows:
        _INSERT_TASKS.executemany(conn, INSERTED_COLUMNS, map(_task_values, rows))
        edges = [(row.id, dep["id"], dep["required"]) for row in rows for dep in row.dependencies]
        if edges:
            _INSERT_EDGES.executemany(conn, _EDGE_KEYS, edges)
    updates: list[tuple[int, StateChange]] = []
    for index, write in enumerate(writes):
        if isinstance(write, UpdateState):
            updates.extend((index, change) for change in write.changes)
        elif isinstance(write, InsertTasks):
            if write.under is not None:
                _mark_has_children(conn, write.under)
        else:
            _STATEMENTS[type(write)](conn, write)
    applied = Applied()
    if updates and conn.dialect.name == "postgresql":
        applied.rejected = update_states(conn, updates)  # asyncpg counts no executemany
    elif updates:
        done = _UPDATE_STATE.executemany(
            conn, _STATE_KEYS, [_state_values(change) for _, change in updates]
        )
        if done != len(updates):
            applied.rejected = _rejected(conn, updates)
    for write in writes:  # after the state changes: statuses as this commit leaves them
        if isinstance(write, InsertTasks) and write.lineage:
            write.reopens = _has_started_group(conn, write.lineage)
    events: list[Event] = [
        event
        for index, write in enumerate(writes)
        if index not in applied.rejected
        for event in write.events
    ]
    if events:
        applied.last_sequence = _number_events(conn, events, numbering)
        _INSERT_EVENTS.executemany(conn, _EVENT_COLUMNS, map(_event_values, events))
    return applied


def _number_events(conn: Connection, events: Sequence[Event], numbering: Numbering) -> int:
    """Number `events`; returns the last number.

    PostgreSQL: from the counter row, taken last, just before the events are stored: its
    row lock is held until commit, so the next transaction (of any replica) numbers after
    this one commits. Sequences thus follow commit order: once a sequence is visible,
    every lower one is. A rollback rolls the counter back too, so no number is lost.
    SQLite has one server and one writer, which commits one batch at a time: it numbers
    on from the last commit in memory (the counter row would cost a statement per
    commit, a tenth of a chain step).
    """
    count = len(events)
    if numbering.head is not None:
        last = numbering.head + count
    else:
        row = conn.execute(_TAKE_SEQUENCES_PG, {"n": count, "origin": numbering.origin}).first()
        if row is None:
            raise RuntimeError("event_head has no row: the database was not migrated (r0007)")
        last = int(row[0])
    for number, event in enumerate(events, last - count + 1):
        event.sequence = number
    return last


def _rejected(conn: Connection, updates: list[tuple[int, StateChange]]) -> set[int]:
    """Indexes of the writes with a change that did not apply (run only when some did not).

    A task's changes in one batch form a chain (each expects the status the previous one
    set). The chain applied up to its last change whose status the task holds now; the
    changes after that one were refused.
    """
    ids = list({change.task_id for _, change in updates})
    stored: dict[str, str] = {}
    for start in range(0, len(ids), IN_CHUNK):
        query = select(tasks.c.id, tasks.c.status).where(
            tasks.c.id.in_(ids[start : start + IN_CHUNK])
        )
        stored.update({task_id: status for task_id, status in conn.execute(query)})
    chains: dict[str, list[tuple[int, str]]] = {}
    for index, change in updates:
        chains.setdefault(change.task_id, []).append((index, change.status))
    rejected: set[int] = set()
    for task_id, chain in chains.items():
        held = stored.get(task_id)
        applied = max((i for i, (_, status) in enumerate(chain) if status == held), default=-1)
        rejected.update(index for index, _ in chain[applied + 1 :])
    return rejected


# Built once: building a statement costs more than SQLite running it. The two that every
# CreateTask under a parent runs go to the driver as plain calls (13 and 29 us through
# SQLAlchemy's execution layer, 1-2 us plain).
_MARK_HAS_CHILDREN = BulkStatement(
    update(tasks)
    .where(tasks.c.id == bindparam("b_id"), tasks.c.has_children.is_(False))
    .values(has_children=True)
)
_STARTED_GROUP = Query(
    select(tasks.c.id)
    .where(
        tasks.c.id.in_(bindparam("ids", expanding=True)),
        tasks.c.executor.is_(None),
        tasks.c.status != statuses.PENDING,
    )
    .limit(1)
)
_MARK_EXECUTION_REQUESTED = (
    update(tasks)
    .where(tasks.c.id.in_(bindparam("ids", expanding=True)))
    .values(execution_requested=True, version=tasks.c.version + 1)
)


def _mark_has_children(conn: Connection, parent_id: str) -> None:
    _MARK_HAS_CHILDREN.executemany(conn, ("b_id",), [(parent_id,)])


def _has_started_group(conn: Connection, ids: Sequence[str]) -> bool:
    return any(
        _STARTED_GROUP.rows(conn, {"ids": ids[start : start + IN_CHUNK]})
        for start in range(0, len(ids), IN_CHUNK)
    )


def _mark_execution_requested(conn: Connection, write: MarkExecutionRequested) -> None:
    ids = write.task_ids
    for start in range(0, len(ids), IN_CHUNK):
        conn.execute(_MARK_EXECUTION_REQUESTED, {"ids": ids[start : start + IN_CHUNK]})


def _update_fields(conn: Connection, write: UpdateFields) -> None:
    """Guarded: only while the task is pending; re-indexes its dependencies."""
    values = {**write.columns, "version": tasks.c.version + 1}
    conn.execute(
        update(tasks)
        .where(tasks.c.id == write.task_id, tasks.c.status == statuses.PENDING)
        .values(**values)
    )
    if "dependencies" in write.columns:
        conn.execute(delete(task_dependencies).where(task_dependencies.c.task_id == write.task_id))
        edges = dependency_edges(write.task_id, write.columns["dependencies"])
        if edges:
            conn.execute(insert(task_dependencies), edges)


def _delete_tasks(conn: Connection, write: DeleteTasks) -> None:
    ids = write.task_ids
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        conn.execute(delete(task_dependencies).where(task_dependencies.c.task_id.in_(chunk)))
        conn.execute(delete(task_logs).where(task_logs.c.task_id.in_(chunk)))
        conn.execute(delete(tasks).where(tasks.c.id.in_(chunk), tasks.c.status == statuses.PENDING))
    if write.parent_id is not None:
        remaining = conn.scalar(
            select(func.count()).select_from(tasks).where(tasks.c.parent_id == write.parent_id)
        )
        if not remaining:
            conn.execute(
                update(tasks).where(tasks.c.id == write.parent_id).values(has_children=False)
            )


def _store_response(conn: Connection, write: StoreResponse) -> None:
    conn.execute(
        insert(idempotency_keys).values(
            request_id=write.request_id,
            method=write.method,
            request_hash=write.request_hash,
            response=write.response,
            created_us=write.created_us,
        )
    )


def _prune_history(conn: Connection, write: PruneHistory) -> None:
    roots = tasks.alias("roots")
    inner = tasks.alias("inner")
    busy = exists().where(
        inner.c.root_id == roots.c.id,
        inner.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
    )
    has_events = exists().where(task_events.c.root_id == roots.c.id)
    query = select(roots.c.id, roots.c.user_id).where(
        roots.c.parent_id.is_(None),
        roots.c.ended_us < write.events_before_us,
        roots.c.status.in_(sorted(statuses.TERMINAL)),
        has_events,
        ~busy,
    )
    for root_id, user_id in conn.execute(query).all():
        through = conn.scalar(
            select(func.max(task_events.c.sequence)).where(task_events.c.root_id == root_id)
        )
        conn.execute(delete(task_events).where(task_events.c.root_id == root_id))
        result = conn.execute(
            update(event_compaction)
            .where(event_compaction.c.root_id == root_id)
            .values(compacted_through=through)
        )
        if result.rowcount == 0:
            conn.execute(
                insert(event_compaction).values(
                    root_id=root_id, user_id=user_id, compacted_through=through
                )
            )
    conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_us < write.keys_before_us)
    )
    # Replicas: the lease rows of finished trees nobody holds (tokens are never reused,
    # so a later claim of one still gets a new token), and commands no one will read.
    idle = ~exists().where(
        tasks.c.root_id == tree_leases.c.root_id,
        tasks.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
    )
    conn.execute(delete(tree_leases).where(tree_leases.c.replica_id == "", idle))
    conn.execute(
        delete(cluster_commands).where(cluster_commands.c.created_us < write.keys_before_us)
    )


def _save_remote_executor(conn: Connection, write: SaveRemoteExecutor) -> None:
    # Delete and insert: one portable upsert (rare: a worker registering a new schema).
    executor = write.executor
    conn.execute(delete(remote_executors).where(remote_executors.c.id == executor.id))
    conn.execute(
        insert(remote_executors).values(
            id=executor.id,
            description=executor.description,
            input_schema=executor.input_schema,
            update_us=write.update_us,
        )
    )


def _release_tree(conn: Connection, write: ReleaseTree) -> None:
    if write.to:
        hand_over(conn, write.root_id, write.token, write.to)
        return
    # The token names one hold: a later claim (another replica's, or ours) has another.
    held = update(tree_leases).where(
        tree_leases.c.root_id == write.root_id, tree_leases.c.token == write.token
    )
    conn.execute(held.values(expires_us=0) if write.handover else held.values(replica_id=""))


def _append_task_log(conn: Connection, write: AppendTaskLog) -> None:
    if write.fresh:
        conn.execute(
            delete(task_logs).where(
                task_logs.c.task_id == write.task_id, task_logs.c.attempt == write.attempt
            )
        )
    if write.lines:
        conn.execute(
            insert(task_logs),
            [
                {
                    "task_id": write.task_id,
                    "attempt": write.attempt,
                    "sequence": line.sequence,
                    "time_us": line.time_us,
                    "text": line.text,
                }
                for line in write.lines
            ],
        )
    if write.keep_from is not None:
        conn.execute(
            delete(task_logs).where(
                task_logs.c.task_id == write.task_id,
                task_logs.c.attempt == write.attempt,
                task_logs.c.sequence < write.keep_from,
            )
        )


_STATEMENTS: dict[type, Any] = {
    MarkExecutionRequested: _mark_execution_requested,
    UpdateFields: _update_fields,
    DeleteTasks: _delete_tasks,
    StoreResponse: _store_response,
    PruneHistory: _prune_history,
    SaveRemoteExecutor: _save_remote_executor,
    AppendTaskLog: _append_task_log,
    ReleaseTree: _release_tree,
}


class SqlWrites:
    """The writer's backend on SQLAlchemy (SQLite file on a thread, or an async driver)."""

    def __init__(self, db: AsyncEngine, url: str) -> None:
        self._db = db
        self._committer: Committer = create_committer(url, db)
        self.fence: Fence | None = None
        """Set when replicas share the database (engine/ownership.py)."""
        self.origin = ""
        """This replica's id, in the NOTIFY of each commit (storage/event_feed.py)."""
        self._head: int | None = 0 if db.dialect.name == "sqlite" else None
        """SQLite: the last sequence committed (numbered on in memory)."""

    async def apply(self, writes: Sequence[Write]) -> Applied:
        size = batch_size(writes)
        fence, numbering = self.fence, Numbering(self.origin, self._head)
        applied = await self._committer.run(
            lambda conn: apply_writes(conn, writes, fence, numbering), size
        )
        if self._head is not None and applied.last_sequence:
            self._head = applied.last_sequence  # committed: the next batch numbers on
        return applied

    def is_transient(self, error: BaseException) -> bool:
        return is_transient(error)

    async def last_sequence(self) -> int:
        async with self._db.connect() as conn:
            # PostgreSQL: the counter row, which every commit that stores events advances
            # (revision 0007 started it at the log's head, pruned sequences included).
            head = await conn.scalar(select(event_head.c.sequence).where(event_head.c.id == 1))
            if self._head is None:
                return int(head or 0)
            # SQLite: the highest sequence ever used, pruned ones included.
            newest = await conn.scalar(select(func.max(task_events.c.sequence)))
            pruned = await conn.scalar(select(func.max(event_compaction.c.compacted_through)))
        self._head = max(head or 0, newest or 0, pruned or 0)
        return self._head

    async def close(self) -> None:
        await self._committer.close()
