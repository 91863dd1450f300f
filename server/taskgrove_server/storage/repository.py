"""Reads of tasks. Every write goes through the `Writer` (group commit) instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import RowMapping, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove import statuses

from taskgrove_server.storage.schema import task_dependencies, tasks

# SQLite limits bound parameters per statement; stay well below it.
_IN_CHUNK = 500


@dataclass(slots=True)
class ListFilter:
    statuses: Sequence[str] = ()
    parent_id: str | None = None
    roots_only: bool = False
    user_id: str | None = None
    after_seq: int = 0
    limit: int = 100


class TaskRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, task_id: str) -> RowMapping | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(select(tasks).where(tasks.c.id == task_id))
            return result.mappings().first()

    async def get_many(self, ids: Iterable[str]) -> dict[str, RowMapping]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, RowMapping] = {}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                result = await conn.execute(select(tasks).where(tasks.c.id.in_(chunk)))
                for row in result.mappings():
                    found[row["id"]] = row
        return found

    async def children_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        """Child ids of each given task, in creation order."""
        wanted = list(dict.fromkeys(ids))
        children: dict[str, list[str]] = {task_id: [] for task_id in wanted}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                query = (
                    select(tasks.c.parent_id, tasks.c.id)
                    .where(tasks.c.parent_id.in_(chunk))
                    .order_by(tasks.c.seq)
                )
                for parent_id, child_id in await conn.execute(query):
                    children[parent_id].append(child_id)
        return children

    async def dependents_of(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(dependent id, dependency id) for every task depending on one of `ids`."""
        wanted = list(dict.fromkeys(ids))
        edges: list[tuple[str, str]] = []
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                query = select(task_dependencies.c.task_id, task_dependencies.c.depends_on).where(
                    task_dependencies.c.depends_on.in_(chunk)
                )
                edges.extend((row[0], row[1]) for row in await conn.execute(query))
        return edges

    async def ancestors(self, task_id: str) -> list[str]:
        """Ids from the task's parent up to its root."""
        chain = select(tasks.c.parent_id.label("id")).where(tasks.c.id == task_id)
        up = chain.cte("up", recursive=True)
        up = up.union_all(select(tasks.c.parent_id).where(tasks.c.id == up.c.id))
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(up.c.id).where(up.c.id.is_not(None)))
            return [row[0] for row in rows]

    async def subtree(
        self, task_id: str, max_depth: int = 0, *, progress_only: bool = False
    ) -> list[RowMapping]:
        """The task and its descendants (down to `max_depth` levels, 0 = all), in pre-order.
        `progress_only` reads just what subtree progress needs."""
        top = select(tasks.c.id, literal(0).label("depth")).where(tasks.c.id == task_id)
        walk = top.cte("walk", recursive=True)
        step = select(tasks.c.id, (walk.c.depth + 1).label("depth")).where(
            tasks.c.parent_id == walk.c.id
        )
        if max_depth > 0:
            step = step.where(walk.c.depth < max_depth)
        walk = walk.union_all(step)
        columns = (
            [tasks.c.id, tasks.c.parent_id, tasks.c.executor, tasks.c.status, tasks.c.progress]
            if progress_only
            else [tasks]
        )
        query = select(*columns).join(walk, walk.c.id == tasks.c.id).order_by(tasks.c.seq)
        async with self._engine.connect() as conn:
            rows = list((await conn.execute(query)).mappings())
        return preorder(rows, task_id)

    async def tree(self, root_id: str, chunk: int = 2000) -> AsyncIterator[list[RowMapping]]:
        """Every task of one tree, in creation order, `chunk` rows at a time (a large
        tree is never all in memory as rows)."""
        async with self._engine.connect() as conn:
            query = select(tasks).where(tasks.c.root_id == root_id).order_by(tasks.c.seq)
            result = await conn.stream(query)
            async for rows in result.mappings().partitions(chunk):
                yield list(rows)

    async def list_tasks(self, flt: ListFilter) -> list[RowMapping]:
        conditions = [tasks.c.seq > flt.after_seq]
        if flt.statuses:
            conditions.append(tasks.c.status.in_(list(flt.statuses)))
        if flt.parent_id:
            conditions.append(tasks.c.parent_id == flt.parent_id)
        if flt.roots_only:
            conditions.append(tasks.c.parent_id.is_(None))
        if flt.user_id:
            conditions.append(tasks.c.user_id == flt.user_id)
        query = select(tasks).where(and_(*conditions)).order_by(tasks.c.seq).limit(flt.limit)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).mappings())

    async def active_roots(self) -> list[str]:
        """Roots of trees with executing tasks that have not finished."""
        query = (
            select(tasks.c.root_id)
            .where(
                tasks.c.execution_requested.is_(True),
                tasks.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
            )
            .group_by(tasks.c.root_id)
            .order_by(func.min(tasks.c.seq))
        )
        async with self._engine.connect() as conn:
            return [row[0] for row in await conn.execute(query)]


def preorder(rows: Sequence[RowMapping], top_id: str) -> list[RowMapping]:
    """Order rows parents-before-children, siblings by creation, starting at `top_id`."""
    by_parent: dict[str | None, list[RowMapping]] = {}
    top: RowMapping | None = None
    for row in rows:
        if row["id"] == top_id:
            top = row
        else:
            by_parent.setdefault(row["parent_id"], []).append(row)
    if top is None:
        return []
    ordered: list[RowMapping] = []
    stack = [top]
    while stack:
        row = stack.pop()
        ordered.append(row)
        stack.extend(reversed(by_parent.get(row["id"], ())))
    return ordered
