"""Reads of tasks and stored responses (SQL). Every write goes through the `Writer`.

Each read is one synchronous function over a connection, run by a `Reader` in one hop
(readers.py); a read that needs several statements (a walk) still costs one hop. The
point reads of a request (a task, a lineage, what a new task refers to) are `small`:
they may run on the event loop, within a budget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, func, literal, select, true
from taskgrove.domain import statuses
from taskgrove.domain.aggregation import ProgressInput

from taskgrove_server.storage.name_match import name_contains
from taskgrove_server.storage.queries import Query
from taskgrove_server.storage.readers import Reader
from taskgrove_server.storage.reads import ListFilter, Referenced, preorder
from taskgrove_server.storage.records import (
    TASK_COLUMNS,
    LogLineRow,
    RemoteExecutorRow,
    StoredResponse,
    TaskLinks,
    TaskRow,
)
from taskgrove_server.storage.schema import (
    idempotency_keys,
    remote_executors,
    task_dependencies,
    task_logs,
    tasks,
)
from taskgrove_server.storage.sql_writes import IN_CHUNK

_COLUMNS = [tasks.c[name] for name in TASK_COLUMNS]
SMALL_READ_IDS = 32
"""A read of up to this many tasks by id is small (see `Reader.run`)."""


def _task(row: Sequence[Any]) -> TaskRow:
    return TaskRow(*row)  # the columns, in field order


def _walk(max_depth: int) -> Any:
    """A recursive CTE of the ids of task `:b_id`'s subtree (`max_depth` levels, 0: all)."""
    top = select(tasks.c.id, literal(0).label("depth")).where(tasks.c.id == bindparam("b_id"))
    walk = top.cte("walk", recursive=True)
    step = select(tasks.c.id, (walk.c.depth + 1).label("depth")).where(
        tasks.c.parent_id == walk.c.id
    )
    if max_depth > 0:
        step = step.where(walk.c.depth < bindparam("b_depth"))
    return walk.union_all(step)


_LINKED_REST = (tasks.c.root_id, tasks.c.user_id, tasks.c.dependencies)
"""After id and executor, the fields of a `TaskLinks`."""


def _has_dependents(task_id: Any) -> Any:
    return exists().where(task_dependencies.c.depends_on == task_id)


def _lineage(rows: bool, flagged: bool = False) -> Any:
    """Task `:b_id` and its ancestors up to the root, nearest first: whole rows, or
    (`rows` False) each one's id, executor and parent id, which is all creation needs
    (reading every ancestor's row made a create at level 1,000 cost 11 ms); `flagged`
    adds whether anything depends on each one."""
    top = select(tasks.c.id, tasks.c.parent_id, tasks.c.executor, literal(0).label("depth"))
    up = top.where(tasks.c.id == bindparam("b_id")).cte("up", recursive=True)
    up = up.union_all(
        select(
            tasks.c.id, tasks.c.parent_id, tasks.c.executor, (up.c.depth + 1).label("depth")
        ).where(tasks.c.id == up.c.parent_id)
    )
    if not rows:
        flags = [_has_dependents(up.c.id)] if flagged else []
        return select(up.c.id, up.c.executor, up.c.parent_id, *flags).order_by(up.c.depth)
    return select(*_COLUMNS).join(up, up.c.id == tasks.c.id).order_by(up.c.depth)


def _near(flagged: bool) -> Any:
    """Task `:b_id` and its parent, in one row: the task's id, executor, parent id and the
    rest of its links, then its parent's id, executor and parent id; `flagged`: then
    whether anything depends on each. What most creates go under (a root, a root's
    child) has its whole lineage there, read without a recursive walk: 5.6 us warm
    against 16, and the first read after a commit costs the server several times that."""
    task, parent = tasks.alias("task"), tasks.alias("parent")
    columns = [task.c.id, task.c.executor, task.c.parent_id, *(task.c[c.key] for c in _LINKED_REST)]
    columns += [parent.c.id, parent.c.executor, parent.c.parent_id]
    if flagged:
        columns += [_has_dependents(task.c.id), _has_dependents(parent.c.id)]
    return (
        select(*columns)
        .select_from(task.outerjoin(parent, parent.c.id == task.c.parent_id))
        .where(task.c.id == bindparam("b_id"))
    )


# Built once: building a statement costs more than SQLite running a point read.
_IDS: Any = bindparam("ids", expanding=True)
_GET = Query(select(*_COLUMNS).where(tasks.c.id == bindparam("b_id")))
_GET_MANY = Query(select(*_COLUMNS).where(tasks.c.id.in_(_IDS)))
_CHILDREN = Query(
    select(tasks.c.parent_id, tasks.c.id).where(tasks.c.parent_id.in_(_IDS)).order_by(tasks.c.seq)
)
_DEPENDENTS = Query(
    select(task_dependencies.c.task_id, task_dependencies.c.depends_on).where(
        task_dependencies.c.depends_on.in_(_IDS)
    )
)
_WALK_LINKS = Query(
    select(tasks.c.id, tasks.c.executor, tasks.c.parent_id).where(tasks.c.id.in_(_IDS))
)
_LINEAGE = Query(_lineage(rows=True))
_LINEAGE_IDS = {flagged: Query(_lineage(rows=False, flagged=flagged)) for flagged in (False, True)}
_NEAR = {flagged: Query(_near(flagged)) for flagged in (False, True)}
"""By whether they say what has dependents."""
_TASK_LINKS = Query(select(tasks.c.id, tasks.c.executor, *_LINKED_REST).where(tasks.c.id.in_(_IDS)))
_WHOLE, _LEVELS = _walk(0), _walk(1)
"""The walk of a whole subtree, and of `b_depth` levels of it."""
_SUBTREE = {
    walk is _LEVELS: Query(
        select(*_COLUMNS).join(walk, walk.c.id == tasks.c.id).order_by(tasks.c.seq)
    )
    for walk in (_WHOLE, _LEVELS)
}
"""By whether the walk stops at `b_depth`."""


def _progress_walk() -> Any:
    """The progress columns of task `:b_id`'s whole subtree, read by the walk itself:
    joined back to `tasks`, a childless group's read cost PostgreSQL 65 ms instead of 27
    in 52,000 tasks (it cannot tell how few rows a recursive CTE yields, and hashed the
    table for the join). The walk's own step still scans the table there when families
    are large, which is why a root is read by its root id and a childless group not at
    all (`Tasks._subtree_progress`)."""
    columns = (tasks.c.id, tasks.c.parent_id, tasks.c.executor, tasks.c.status)
    top = select(*columns, tasks.c.progress, tasks.c.seq).where(tasks.c.id == bindparam("b_id"))
    walk = top.cte("progress_walk", recursive=True)
    walk = walk.union_all(
        select(*columns, tasks.c.progress, tasks.c.seq).where(tasks.c.parent_id == walk.c.id)
    )
    return select(
        walk.c.id, walk.c.parent_id, walk.c.executor, walk.c.status, walk.c.progress
    ).order_by(walk.c.seq)


_PROGRESS = Query(_progress_walk())
_TREE_PROGRESS = Query(
    select(tasks.c.id, tasks.c.parent_id, tasks.c.executor, tasks.c.status, tasks.c.progress)
    .where(tasks.c.root_id == bindparam("b_root"))
    .order_by(tasks.c.seq)
)
_TREE_CHUNK = Query(
    select(*_COLUMNS)
    .where(tasks.c.root_id == bindparam("b_root"), tasks.c.seq > bindparam("b_after"))
    .order_by(tasks.c.seq)
    .limit(bindparam("b_limit"))
)
_ACTIVE_ROOTS = Query(
    select(tasks.c.root_id)
    .where(
        tasks.c.execution_requested.is_(True),
        tasks.c.status.in_([statuses.PENDING, statuses.IN_PROGRESS]),
    )
    .group_by(tasks.c.root_id)
    .order_by(func.min(tasks.c.seq))
)
_REMOTE_EXECUTORS = Query(
    select(
        remote_executors.c.id, remote_executors.c.description, remote_executors.c.input_schema
    ).order_by(remote_executors.c.id)
)
_TASK_LOG = Query(
    select(task_logs.c.sequence, task_logs.c.time_us, task_logs.c.text)
    .where(
        task_logs.c.task_id == bindparam("b_id"),
        task_logs.c.attempt == bindparam("b_attempt"),
        task_logs.c.sequence > bindparam("b_after"),
    )
    .order_by(task_logs.c.sequence)
)
_STORED_RESPONSE = Query(
    select(
        idempotency_keys.c.method, idempotency_keys.c.request_hash, idempotency_keys.c.response
    ).where(idempotency_keys.c.request_id == bindparam("b_id"))
)


class SqlReads:
    """`TaskReads` on SQLAlchemy."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    async def close(self) -> None:
        await self._reader.close()

    async def get(self, task_id: str) -> TaskRow | None:
        def read(conn: Connection) -> TaskRow | None:
            rows = _GET.rows(conn, {"b_id": task_id})
            return _task(rows[0]) if rows else None

        return await self._reader.run(read, small=True)

    async def get_many(self, ids: Iterable[str]) -> dict[str, TaskRow]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        small = len(wanted) <= SMALL_READ_IDS
        return await self._reader.run(lambda conn: _get_many(conn, wanted), small=small)

    async def children_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(ids))

        def read(conn: Connection) -> dict[str, list[str]]:
            children: dict[str, list[str]] = {task_id: [] for task_id in wanted}
            for chunk in _chunks(wanted):
                for parent_id, child_id in _CHILDREN.rows(conn, {"ids": chunk}):
                    children[parent_id].append(child_id)
            return children

        return await self._reader.run(read)

    async def dependents_of(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        wanted = list(dict.fromkeys(ids))

        def read(conn: Connection) -> list[tuple[str, str]]:
            return [
                (row[0], row[1])
                for chunk in _chunks(wanted)
                for row in _DEPENDENTS.rows(conn, {"ids": chunk})
            ]

        return await self._reader.run(read)

    async def lineage(self, task_id: str) -> list[TaskRow]:
        return await self._reader.run(_all_tasks(_LINEAGE, {"b_id": task_id}), small=True)

    async def referenced(self, parent_id: str, ids: Collection[str]) -> Referenced:
        wanted = [task_id for task_id in dict.fromkeys(ids) if task_id != parent_id]

        def read(conn: Connection) -> Referenced:
            flagged = bool(ids)  # dependencies: whether anything waits for the lineage
            rows = _task_links(conn, wanted) if wanted else {}
            near = _NEAR[flagged].rows(conn, {"b_id": parent_id})
            if not near:
                return Referenced(rows, [], set())
            row = near[0]
            rows[parent_id] = TaskLinks(row[0], row[1], *row[3:6])
            flags = row[9:11] if flagged else (False, False)
            # Up the lineage: each one's id, executor, parent id, whether it has dependents.
            up = [(row[0], row[1], row[2], flags[0])]
            if row[6] is not None:
                up.append((row[6], row[7], row[8], flags[1]))
                if row[8] is not None:  # deeper: the rest, walked up from the next one
                    above = _LINEAGE_IDS[flagged].rows(conn, {"b_id": row[8]})
                    up += [(r[0], r[1], r[2], flagged and r[3]) for r in above]
            waiting = set()
            if ids:
                groups = [entry for entry in up if entry[1] is None]
                if not any(entry[3] for entry in groups):
                    # Nothing waits for a group above (a tutorial's chain): the walk would
                    # go up the lineage only, and find its groups.
                    waiting = {entry[0] for entry in groups}
                else:  # the walk goes up first: it knows the lineage
                    known = {entry[0]: (entry[1] is None, entry[2]) for entry in up}
                    waiting = _waiting_for_new_child(conn, parent_id, known)
            return Referenced(rows, [entry[0] for entry in up], waiting)

        return await self._reader.run(read, small=True)

    async def subtree(self, task_id: str, max_depth: int = 0) -> list[TaskRow]:
        query = _SUBTREE[max_depth > 0]
        params = {"b_id": task_id, "b_depth": max_depth}
        return preorder(await self._reader.run(_all_tasks(query, params)), task_id)

    async def progress_inputs(self, task_id: str, *, root: bool = False) -> list[ProgressInput]:
        """The progress of `task_id`'s subtree's tasks; `root`: it is a root, whose
        subtree is its tree (read by root id instead of a walk)."""
        query, params = (
            (_TREE_PROGRESS, {"b_root": task_id}) if root else (_PROGRESS, {"b_id": task_id})
        )

        def read(conn: Connection) -> list[ProgressInput]:
            return [
                ProgressInput(row[0], row[1], row[2] is None, row[3], row[4])
                for row in query.rows(conn, params)
            ]

        return preorder(await self._reader.run(read), task_id)

    async def tree(self, root_id: str, chunk: int = 2000) -> AsyncIterator[list[TaskRow]]:
        # One hop per chunk, resuming after the last row's insertion order: a large tree is
        # never all in memory as rows, and no connection is held between chunks.
        after = 0
        while True:
            params = {"b_root": root_id, "b_after": after, "b_limit": chunk}
            rows = await self._reader.run(_all_tasks(_TREE_CHUNK, params))
            if rows:
                yield rows
            if len(rows) < chunk:
                return
            after = rows[-1].seq

    async def list_tasks(self, flt: ListFilter) -> list[TaskRow]:
        conditions = []
        if flt.newest_first:
            if flt.after_seq:
                conditions.append(tasks.c.seq < flt.after_seq)
        else:
            conditions.append(tasks.c.seq > flt.after_seq)
        if flt.statuses:
            conditions.append(tasks.c.status.in_(list(flt.statuses)))
        if flt.parent_id:
            conditions.append(tasks.c.parent_id == flt.parent_id)
        if flt.roots_only:
            conditions.append(tasks.c.parent_id.is_(None))
        if flt.user_id:
            conditions.append(tasks.c.user_id == flt.user_id)
        if flt.name_contains:
            conditions.append(name_contains(tasks.c.name, flt.name_contains))
        order = tasks.c.seq.desc() if flt.newest_first else tasks.c.seq
        query = select(*_COLUMNS).where(and_(true(), *conditions)).order_by(order).limit(flt.limit)
        return await self._reader.run(lambda conn: [_task(row) for row in conn.execute(query)])

    async def active_roots(self) -> list[str]:
        return await self._reader.run(lambda conn: [row[0] for row in _ACTIVE_ROOTS.rows(conn)])

    async def stored_response(self, request_id: str) -> StoredResponse | None:
        def read(conn: Connection) -> StoredResponse | None:
            rows = _STORED_RESPONSE.rows(conn, {"b_id": request_id})
            return StoredResponse(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

        return await self._reader.run(read, small=True)

    async def remote_executors(self) -> list[RemoteExecutorRow]:
        def read(conn: Connection) -> list[RemoteExecutorRow]:
            return [
                RemoteExecutorRow(row[0], row[1], dict(row[2]))
                for row in _REMOTE_EXECUTORS.rows(conn, {})
            ]

        return await self._reader.run(read, small=True)

    async def task_log(
        self, task_id: str, attempt: int, after_sequence: int = 0
    ) -> list[LogLineRow]:
        params = {"b_id": task_id, "b_attempt": attempt, "b_after": after_sequence}
        return await self._reader.run(
            lambda conn: [LogLineRow(*row) for row in _TASK_LOG.rows(conn, params)]
        )


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    return (ids[start : start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK))


def _all_tasks(
    query: Query, params: dict[str, Any] | None = None
) -> Callable[[Connection], list[TaskRow]]:
    return lambda conn: [_task(row) for row in query.rows(conn, params)]


def _get_many(conn: Connection, ids: list[str]) -> dict[str, TaskRow]:
    found: dict[str, TaskRow] = {}
    for chunk in _chunks(ids):
        for row in _GET_MANY.rows(conn, {"ids": chunk}):
            task = _task(row)
            found[task.id] = task
    return found


def _task_links(conn: Connection, ids: list[str]) -> dict[str, TaskLinks]:
    return {
        row[0]: TaskLinks(*row)
        for chunk in _chunks(ids)
        for row in _TASK_LINKS.rows(conn, {"ids": chunk})
    }


def _waiting_for_new_child(
    conn: Connection, parent_id: str, known: dict[str, tuple[bool, str | None]] | None = None
) -> set[str]:
    """`Referenced.waiting` for a new child of `parent_id`: a walk against the waits-for
    edges.

    Vertices as in `service.validation.find_cycle`: `run` (the task itself is done) and
    `sub` (its subtree is done); a group has only `run` (it is done when its subtree is).
    Walking backwards, `run(x)` is waited for by `run` of x's dependents and, for a task
    that runs, by `sub(x)`; `sub(x)` and a group's `run(x)` by the vertex of x's parent.
    `known`: links already read (the parent's lineage).
    """
    links: dict[str, tuple[bool, str | None]] = dict(known or {})
    """Task id -> (is a group, parent id), read as the walk reaches it."""

    def learn(ids: Iterable[str]) -> None:
        missing = [task_id for task_id in dict.fromkeys(ids) if task_id not in links]
        for chunk in _chunks(missing):
            for task_id, executor, parent in _WALK_LINKS.rows(conn, {"ids": chunk}):
                links[task_id] = (executor is None, parent)

    def vertex(task_id: str) -> tuple[str, str]:
        return ("run" if links[task_id][0] else "sub", task_id)

    learn([parent_id])
    if parent_id not in links:
        return set()
    start = vertex(parent_id)
    seen = {start}
    frontier = [start]
    while frontier:
        found: list[tuple[str, str]] = []
        runs = [task_id for kind, task_id in frontier if kind == "run"]
        for chunk in _chunks(runs):
            found.extend(("run", row[0]) for row in _DEPENDENTS.rows(conn, {"ids": chunk}))
        upward = []
        for kind, task_id in frontier:
            group, parent = links[task_id]
            if kind == "run" and not group:
                found.append(("sub", task_id))
            elif parent is not None:
                upward.append(parent)
        learn(upward)
        found.extend(vertex(parent) for parent in upward if parent in links)
        learn(task_id for _, task_id in found)
        frontier = [v for v in dict.fromkeys(found) if v not in seen and v[1] in links]
        seen.update(frontier)
    return {task_id for kind, task_id in seen if kind == "run"}
