"""Reads of the event log, and snapshots of the tasks a watcher covers (SQL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy import Connection, and_, case, func, select, true

from taskgrove_server.events.event import Event, EventFilter
from taskgrove_server.storage.readers import Reader
from taskgrove_server.storage.records import TASK_COLUMNS, TaskRow
from taskgrove_server.storage.schema import event_compaction, event_head, task_events, tasks

_EVENT_COLUMNS = [column for column in task_events.columns]
_TASK_COLUMNS = [tasks.c[name] for name in TASK_COLUMNS]
_HEAD = select(event_head.c.sequence).where(event_head.c.id == 1)


def _conditions(flt: EventFilter, table: Any, task_column: str) -> list[Any]:
    conditions = []
    if flt.root_id:
        conditions.append(table.c.root_id == flt.root_id)
    if flt.task_id:
        conditions.append(table.c[task_column] == flt.task_id)
    if flt.user_id:
        conditions.append(table.c.user_id == flt.user_id)
    return conditions


class EventLog:
    """Reads through the store's `Reader`: on SQLite its threads, so that a watcher who
    leaves mid-read (a cancel) never interrupts a statement."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    async def after(
        self, flt: EventFilter, after_sequence: int, limit: int, through: int | None = None
    ) -> list[Event]:
        """Stored events matching `flt` with a sequence above `after_sequence` (and at
        most `through`), oldest first, at most `limit`."""
        conditions = _conditions(flt, task_events, "task_id")
        if through is not None:
            conditions.append(task_events.c.sequence <= through)
        query = (
            select(*_EVENT_COLUMNS)
            .where(task_events.c.sequence > after_sequence, *conditions)
            .order_by(task_events.c.sequence)
            .limit(limit)
        )

        def read(conn: Connection) -> list[Event]:
            return [_event(row._mapping) for row in conn.execute(query)]

        return await self._reader.run(read)

    async def head(self) -> int:
        """The counter row: the highest sequence committed (by any replica). Every event
        up to it is committed and visible (sequences follow commit order)."""

        def read(conn: Connection) -> int:
            return int(conn.scalar(_HEAD) or 0)

        return await self._reader.run(read, small=True)

    async def standing(self, flt: EventFilter) -> tuple[bool, int]:
        """Whether the tree or task `flt` names is known, and the log's head.

        Known: it exists for its owner, or it still has events (a deleted task's last events
        remain until pruned); with neither a root nor a task id, True. The head is the
        highest sequence the log has reached: its newest event, or the highest pruned one
        when the newest were pruned too (sequences are never reused).
        """
        newest = select(func.coalesce(func.max(task_events.c.sequence), 0)).scalar_subquery()
        pruned = select(
            func.coalesce(func.max(event_compaction.c.compacted_through), 0)
        ).scalar_subquery()

        def read(conn: Connection) -> tuple[bool, int]:
            row = conn.execute(select(newest, pruned)).one()
            head = max(int(row[0]), int(row[1]))
            if not (flt.root_id or flt.task_id):
                return True, head
            task_id = flt.task_id or flt.root_id
            exists = select(tasks.c.id).where(tasks.c.id == task_id)
            if flt.root_id:
                exists = exists.where(tasks.c.root_id == flt.root_id)  # a root is its own
            if flt.user_id:
                exists = exists.where(tasks.c.user_id == flt.user_id)
            if conn.scalar(exists.limit(1)) is not None:
                return True, head
            logged = select(task_events.c.sequence).where(*_conditions(flt, task_events, "task_id"))
            return conn.scalar(logged.limit(1)) is not None, head

        return await self._reader.run(read)

    async def compacted_through(self, flt: EventFilter) -> int:
        """Highest pruned sequence among the trees `flt` can see (0: nothing pruned)."""

        def read(conn: Connection) -> int:
            query = select(func.max(event_compaction.c.compacted_through))
            if flt.root_id or flt.task_id:
                root_id = flt.root_id
                if flt.task_id:
                    found = conn.scalar(select(tasks.c.root_id).where(tasks.c.id == flt.task_id))
                    root_id = found or flt.task_id
                query = query.where(event_compaction.c.root_id == root_id)
                if flt.user_id:  # another owner's tree is absent, compacted or not
                    query = query.where(event_compaction.c.user_id == flt.user_id)
            elif flt.user_id:
                query = query.where(event_compaction.c.user_id == flt.user_id)
            return int(conn.scalar(query) or 0)

        return await self._reader.run(read, small=True)

    async def snapshot(
        self, flt: EventFilter, chunk: int
    ) -> AsyncGenerator[tuple[list[TaskRow], int], None]:
        """The tasks matching `flt`, `chunk` at a time, with the sequence they reflect.

        One statement reads both, so both come from one database snapshot (SQLite runs
        plain SELECTs outside any transaction, each with a snapshot of its own); it is
        streamed, so a large tree is never all in memory. Yields at least once. Close it
        (`contextlib.aclosing`) when leaving early: that lets the snapshot go.
        """
        newest = func.coalesce(select(func.max(task_events.c.sequence)).scalar_subquery(), 0)
        pruned = func.coalesce(
            select(func.max(event_compaction.c.compacted_through)).scalar_subquery(), 0
        )
        high_water = select(
            case((newest > pruned, newest), else_=pruned).label("snapshot_sequence")
        ).subquery("high_water")
        query = (
            select(high_water.c.snapshot_sequence, *_TASK_COLUMNS)
            .select_from(high_water.outerjoin(tasks, and_(true(), *_conditions(flt, tasks, "id"))))
            .order_by(tasks.c.seq)
        )
        async with contextlib.aclosing(self._reader.stream(query, chunk)) as chunks:
            async for rows in chunks:
                sequence = int(rows[0][0])
                yield [TaskRow(*row[1:]) for row in rows if row[1] is not None], sequence


def _event(row: Any) -> Event:
    return Event(
        task_id=row["task_id"],
        root_id=row["root_id"],
        user_id=row["user_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        type=row["type"],
        status=row["status"],
        previous_status=row["previous_status"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        error=row["error"],
        attempt=row["attempt"],
        is_group=row["is_group"],
        time_us=row["time_us"],
        sequence=row["sequence"],
    )
