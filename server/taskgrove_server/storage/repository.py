"""Reads of tasks and stored responses (SQL). Every write goes through the `Writer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from sqlalchemy import Row, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove.domain import statuses
from taskgrove.domain.aggregation import ProgressInput

from taskgrove_server.storage.reads import ListFilter, preorder
from taskgrove_server.storage.records import TASK_COLUMNS, StoredResponse, TaskRow
from taskgrove_server.storage.schema import idempotency_keys, task_dependencies, tasks
from taskgrove_server.storage.sql_writes import IN_CHUNK

_COLUMNS = [tasks.c[name] for name in TASK_COLUMNS]


def _task(row: Row[Any]) -> TaskRow:
    return TaskRow(*row)  # type: ignore[call-arg]  # the columns, in field order


def _walk(task_id: str, max_depth: int) -> Any:
    """A recursive CTE of the ids of a task's subtree (`max_depth` levels, 0: all)."""
    top = select(tasks.c.id, literal(0).label("depth")).where(tasks.c.id == task_id)
    walk = top.cte("walk", recursive=True)
    step = select(tasks.c.id, (walk.c.depth + 1).label("depth")).where(
        tasks.c.parent_id == walk.c.id
    )
    if max_depth > 0:
        step = step.where(walk.c.depth < max_depth)
    return walk.union_all(step)


class SqlReads:
    """`TaskReads` on SQLAlchemy."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def get(self, task_id: str) -> TaskRow | None:
        async with self._db.connect() as conn:
            row = (await conn.execute(select(*_COLUMNS).where(tasks.c.id == task_id))).first()
        return _task(row) if row is not None else None

    async def get_many(self, ids: Iterable[str]) -> dict[str, TaskRow]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, TaskRow] = {}
        if not wanted:
            return found
        async with self._db.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                for row in await conn.execute(select(*_COLUMNS).where(tasks.c.id.in_(chunk))):
                    task = _task(row)
                    found[task.id] = task
        return found

    async def children_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(ids))
        children: dict[str, list[str]] = {task_id: [] for task_id in wanted}
        async with self._db.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                query = (
                    select(tasks.c.parent_id, tasks.c.id)
                    .where(tasks.c.parent_id.in_(chunk))
                    .order_by(tasks.c.seq)
                )
                for parent_id, child_id in await conn.execute(query):
                    children[parent_id].append(child_id)
        return children

    async def dependents_of(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        wanted = list(dict.fromkeys(ids))
        edges: list[tuple[str, str]] = []
        async with self._db.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                query = select(task_dependencies.c.task_id, task_dependencies.c.depends_on).where(
                    task_dependencies.c.depends_on.in_(chunk)
                )
                edges.extend((row[0], row[1]) for row in await conn.execute(query))
        return edges

    async def ancestors(self, task_id: str) -> list[str]:
        chain = select(tasks.c.parent_id.label("id")).where(tasks.c.id == task_id)
        up = chain.cte("up", recursive=True)
        up = up.union_all(select(tasks.c.parent_id).where(tasks.c.id == up.c.id))
        async with self._db.connect() as conn:
            rows = await conn.execute(select(up.c.id).where(up.c.id.is_not(None)))
            return [row[0] for row in rows]

    async def subtree(self, task_id: str, max_depth: int = 0) -> list[TaskRow]:
        walk = _walk(task_id, max_depth)
        query = select(*_COLUMNS).join(walk, walk.c.id == tasks.c.id)
        async with self._db.connect() as conn:
            rows = [_task(row) for row in await conn.execute(query.order_by(tasks.c.seq))]
        return preorder(rows, task_id)

    async def progress_inputs(self, task_id: str) -> list[ProgressInput]:
        walk = _walk(task_id, 0)
        query = (
            select(
                tasks.c.id, tasks.c.parent_id, tasks.c.executor, tasks.c.status, tasks.c.progress
            )
            .join(walk, walk.c.id == tasks.c.id)
            .order_by(tasks.c.seq)
        )
        async with self._db.connect() as conn:
            found = [
                ProgressInput(row[0], row[1], row[2] is None, row[3], row[4])
                for row in await conn.execute(query)
            ]
        return preorder(found, task_id)

    async def tree(self, root_id: str, chunk: int = 2000) -> AsyncIterator[list[TaskRow]]:
        async with self._db.connect() as conn:
            query = select(*_COLUMNS).where(tasks.c.root_id == root_id).order_by(tasks.c.seq)
            result = await conn.stream(query)
            async for rows in result.partitions(chunk):
                yield [_task(row) for row in rows]

    async def list_tasks(self, flt: ListFilter) -> list[TaskRow]:
        conditions = [tasks.c.seq > flt.after_seq]
        if flt.statuses:
            conditions.append(tasks.c.status.in_(list(flt.statuses)))
        if flt.parent_id:
            conditions.append(tasks.c.parent_id == flt.parent_id)
        if flt.roots_only:
            conditions.append(tasks.c.parent_id.is_(None))
        if flt.user_id:
            conditions.append(tasks.c.user_id == flt.user_id)
        query = select(*_COLUMNS).where(and_(*conditions)).order_by(tasks.c.seq).limit(flt.limit)
        async with self._db.connect() as conn:
            return [_task(row) for row in await conn.execute(query)]

    async def active_roots(self) -> list[str]:
        query = (
            select(tasks.c.root_id)
            .where(
                tasks.c.execution_requested.is_(True),
                tasks.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
            )
            .group_by(tasks.c.root_id)
            .order_by(func.min(tasks.c.seq))
        )
        async with self._db.connect() as conn:
            return [row[0] for row in await conn.execute(query)]

    async def stored_response(self, request_id: str) -> StoredResponse | None:
        query = select(
            idempotency_keys.c.method, idempotency_keys.c.request_hash, idempotency_keys.c.response
        ).where(idempotency_keys.c.request_id == request_id)
        async with self._db.connect() as conn:
            row = (await conn.execute(query)).first()
        return StoredResponse(row[0], row[1], bytes(row[2])) if row is not None else None
