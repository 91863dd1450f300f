"""Reads of the event log, snapshots, and pruning of finished trees' history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove import statuses

from taskgrove_server.events.event import Event
from taskgrove_server.events.hub import EventFilter
from taskgrove_server.storage.schema import event_compaction, task_events, tasks
from taskgrove_server.storage.writer import Statement


def _event_conditions(flt: EventFilter) -> list[Any]:
    conditions = []
    if flt.root_id:
        conditions.append(task_events.c.root_id == flt.root_id)
    if flt.task_id:
        conditions.append(task_events.c.task_id == flt.task_id)
    if flt.user_id:
        conditions.append(task_events.c.user_id == flt.user_id)
    return conditions


def _task_conditions(flt: EventFilter) -> list[Any]:
    conditions = []
    if flt.root_id:
        conditions.append(tasks.c.root_id == flt.root_id)
    if flt.task_id:
        conditions.append(tasks.c.id == flt.task_id)
    if flt.user_id:
        conditions.append(tasks.c.user_id == flt.user_id)
    return conditions


class EventLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def after(self, flt: EventFilter, after_sequence: int, limit: int) -> list[Event]:
        """Stored events matching `flt` with a sequence above `after_sequence`, oldest first."""
        query = (
            select(task_events)
            .where(task_events.c.sequence > after_sequence, *_event_conditions(flt))
            .order_by(task_events.c.sequence)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [Event.from_row(row) for row in (await conn.execute(query)).mappings()]

    async def compacted_through(self, flt: EventFilter) -> int:
        """Highest pruned sequence among the trees `flt` can see (0: nothing pruned)."""
        query = select(func.max(event_compaction.c.compacted_through))
        if flt.root_id or flt.task_id:
            root_id = flt.root_id
            if flt.task_id:
                async with self._engine.connect() as conn:
                    found = await conn.scalar(
                        select(tasks.c.root_id).where(tasks.c.id == flt.task_id)
                    )
                root_id = found or flt.task_id
            query = query.where(event_compaction.c.root_id == root_id)
        elif flt.user_id:
            query = query.where(event_compaction.c.user_id == flt.user_id)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    async def snapshot(
        self, flt: EventFilter, chunk: int
    ) -> AsyncIterator[tuple[list[RowMapping], int]]:
        """The tasks matching `flt`, `chunk` at a time, with the sequence they reflect.

        One statement reads both, so both come from one database snapshot (SQLite runs
        plain SELECTs outside any transaction, each with a snapshot of its own); it is
        streamed, so a large tree is never all in memory. Yields at least once.
        """
        newest = func.coalesce(select(func.max(task_events.c.sequence)).scalar_subquery(), 0)
        pruned = func.coalesce(
            select(func.max(event_compaction.c.compacted_through)).scalar_subquery(), 0
        )
        high_water = select(
            case((newest > pruned, newest), else_=pruned).label("snapshot_sequence")
        ).subquery("high_water")
        query = (
            select(high_water.c.snapshot_sequence, tasks)
            .select_from(high_water.outerjoin(tasks, and_(true(), *_task_conditions(flt))))
            .order_by(tasks.c.seq)
        )
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # a server-side cursor needs a transaction
                await conn.begin()
            result = await conn.stream(query)
            async for rows in result.mappings().partitions(chunk):
                sequence = int(rows[0]["snapshot_sequence"])
                yield [row for row in rows if row["id"] is not None], sequence


def prune_finished(cutoff_us: int) -> Statement:
    """A writer statement deleting the events of trees that finished before `cutoff_us`,
    remembering per tree how far history was pruned (so resuming there is refused)."""

    def run(conn: Connection) -> None:
        roots = tasks.alias("roots")
        inner = tasks.alias("inner")
        busy = exists().where(
            inner.c.root_id == roots.c.id,
            inner.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
        )
        has_events = exists().where(task_events.c.root_id == roots.c.id)
        query = select(roots.c.id, roots.c.user_id).where(
            roots.c.parent_id.is_(None),
            roots.c.ended_us < cutoff_us,
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

    return run
