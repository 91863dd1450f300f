"""An in-memory store: `TaskReads` and the writer's backend over plain dicts.

For unit tests of the engine and the use-cases without a database or sockets (as
procrastinate's InMemoryConnector): it keeps the same rules the SQL statements enforce
(guarded state changes, pending-only updates and deletes, the dependency index), and can
be told to fail the next batches, transiently or for good.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import replace

from taskgrove.domain import statuses
from taskgrove.domain.aggregation import ProgressInput

from taskgrove_server.events.event import Event
from taskgrove_server.storage.reads import ListFilter, Referenced, preorder
from taskgrove_server.storage.records import (
    LogLineRow,
    RemoteExecutorRow,
    StoredResponse,
    TaskLinks,
    TaskRow,
)
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


class TransientStorageError(Exception):
    """What `fail_next(transient=True)` raises: storage, not the data (retried)."""


class RefusedWriteError(Exception):
    """What a write `refuse` picks raises: the data is refused (the write is isolated)."""


class MemoryStore:
    def __init__(self) -> None:
        self.tasks: dict[str, TaskRow] = {}
        self.events: list[Event] = []
        self.responses: dict[str, StoredResponse] = {}
        self.remote: dict[str, RemoteExecutorRow] = {}
        self.logs: dict[tuple[str, int], list[LogLineRow]] = {}
        self._seq = 0
        self._event_head = 0
        self._transient_failures = 0
        self.refuse: Callable[[Write], bool] = lambda write: False
        """Writes the "database" refuses (poison rows): the batch holding one fails."""
        self.batches = 0

    # ------------------------------------------------------------------ failures

    def fail_next(self, batches: int) -> None:
        """Fail the next `batches` commits as if the disk were full."""
        self._transient_failures = batches

    # ------------------------------------------------------------------ WriteBackend

    async def apply(self, writes: Sequence[Write]) -> Applied:
        if self._transient_failures:
            self._transient_failures -= 1
            raise TransientStorageError("database or disk is full")
        for write in writes:
            if self.refuse(write):
                raise RefusedWriteError(f"{type(write).__name__} refused")
        # All or nothing: work on copies, publish them at the end.
        tasks = dict(self.tasks)
        applied = Applied()
        for index, write in enumerate(writes):
            if not self._apply_one(tasks, write):
                applied.rejected.add(index)
        for write in writes:  # as the batch leaves the statuses, like the SQL backend
            if isinstance(write, InsertTasks) and write.lineage:
                write.reopens = any(
                    tasks[task_id].is_group and tasks[task_id].status != statuses.PENDING
                    for task_id in write.lineage
                    if task_id in tasks
                )
        self.tasks = tasks
        stored = [e for i, w in enumerate(writes) if i not in applied.rejected for e in w.events]
        for event in stored:  # numbered at commit, like the SQL backend's counter row
            self._event_head += 1
            event.sequence = self._event_head
        if stored:
            applied.last_sequence = self._event_head
        self.events.extend(stored)
        self.batches += 1
        return applied

    def _apply_one(self, tasks: dict[str, TaskRow], write: Write) -> bool:
        if isinstance(write, InsertTasks):
            for row in write.rows:
                self._seq += 1
                tasks[row.id] = replace(row, seq=self._seq)
            if write.under is not None and write.under in tasks:
                tasks[write.under] = replace(tasks[write.under], has_children=True)
        elif isinstance(write, UpdateState):
            applied = True
            for change in write.changes:
                held = tasks.get(change.task_id)
                if held is None or held.status != change.expected_status:
                    applied = False
                    continue
                tasks[held.id] = replace(
                    held,
                    status=change.status,
                    execution_requested=change.execution_requested,
                    attempt=change.attempt,
                    result=copy.deepcopy(change.result),
                    error=copy.deepcopy(change.error),
                    progress=change.progress,
                    progress_message=change.progress_message,
                    started_us=change.started_us,
                    ended_us=change.ended_us,
                    updated_us=change.updated_us,
                    version=held.version + 1,
                )
            return applied
        elif isinstance(write, MarkExecutionRequested):
            for task_id in write.task_ids:
                row = tasks[task_id]
                tasks[task_id] = replace(row, execution_requested=True, version=row.version + 1)
        elif isinstance(write, UpdateFields):
            row = tasks[write.task_id]
            if row.status == statuses.PENDING:
                tasks[row.id] = replace(row, **write.columns, version=row.version + 1)
        elif isinstance(write, DeleteTasks):
            for task_id in write.task_ids:
                if tasks[task_id].status == statuses.PENDING:
                    del tasks[task_id]
                    for key in [key for key in self.logs if key[0] == task_id]:
                        del self.logs[key]
            parent = tasks.get(write.parent_id or "")
            if parent is not None and not any(t.parent_id == parent.id for t in tasks.values()):
                tasks[parent.id] = replace(parent, has_children=False)
        elif isinstance(write, StoreResponse):
            self.responses[write.request_id] = StoredResponse(
                write.method, write.request_hash, write.response
            )
        elif isinstance(write, SaveRemoteExecutor):
            self.remote[write.executor.id] = write.executor
        elif isinstance(write, AppendTaskLog):
            kept = self.logs.setdefault((write.task_id, write.attempt), [])
            if write.fresh:
                kept.clear()
            kept.extend(write.lines)
            if write.keep_from is not None:
                kept[:] = [line for line in kept if line.sequence >= write.keep_from]
        elif isinstance(write, (PruneHistory, ReleaseTree)):
            pass  # nothing is kept long enough to prune; one process, no leases
        return True

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, TransientStorageError)

    async def last_sequence(self) -> int:
        return self._event_head

    async def close(self) -> None:
        pass

    # ------------------------------------------------------------------ TaskReads

    async def get(self, task_id: str) -> TaskRow | None:
        return self.tasks.get(task_id)

    async def get_many(self, ids: Iterable[str]) -> dict[str, TaskRow]:
        return {task_id: self.tasks[task_id] for task_id in ids if task_id in self.tasks}

    def _ordered(self) -> list[TaskRow]:
        return sorted(self.tasks.values(), key=lambda row: row.seq)

    async def children_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(dict.fromkeys(ids))
        children: dict[str, list[str]] = {task_id: [] for task_id in wanted}
        for row in self._ordered():
            if row.parent_id in children:
                children[row.parent_id].append(row.id)
        return children

    async def dependents_of(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        wanted = set(ids)
        return [
            (row.id, dep["id"])
            for row in self._ordered()
            for dep in row.dependencies
            if dep["id"] in wanted
        ]

    async def lineage(self, task_id: str) -> list[TaskRow]:
        chain = []
        row: TaskRow | None = self.tasks.get(task_id)
        while row is not None:
            chain.append(row)
            row = self.tasks.get(row.parent_id) if row.parent_id is not None else None
        return chain

    async def referenced(self, parent_id: str, ids: Collection[str]) -> Referenced:
        lineage = [row.id for row in await self.lineage(parent_id)]
        rows = await self.get_many([*lineage[:1], *ids])
        waiting = self._waiting_for_new_child(parent_id) if lineage and ids else set()
        links = {task_id: TaskLinks.of(row) for task_id, row in rows.items()}
        return Referenced(links, lineage, waiting)

    def _waiting_for_new_child(self, parent_id: str) -> set[str]:
        # Forwards, as validation sees it: whatever can reach the new child's parent
        # vertex along waits-for edges (a plain search from every task: tests are small).
        def vertex(row: TaskRow) -> tuple[str, str]:
            return ("run" if row.is_group else "sub", row.id)

        def edges(kind: str, task_id: str) -> list[tuple[str, str]]:
            row = self.tasks[task_id]
            children = [child for child in self._ordered() if child.parent_id == task_id]
            if kind == "sub":  # a task that runs, with its subtree
                return [("run", task_id), *(vertex(child) for child in children)]
            if row.is_group:
                return [vertex(child) for child in children]
            return [("run", dep["id"]) for dep in row.dependencies if dep["id"] in self.tasks]

        if parent_id not in self.tasks:
            return set()
        target = vertex(self.tasks[parent_id])
        waiting = set()
        for row in self.tasks.values():
            start = ("run", row.id)
            seen, stack = {start}, [start]
            while stack:
                current = stack.pop()
                if current == target:
                    waiting.add(row.id)
                    break
                for following in edges(*current):
                    if following not in seen:
                        seen.add(following)
                        stack.append(following)
        return waiting

    async def subtree(self, task_id: str, max_depth: int = 0) -> list[TaskRow]:
        rows = preorder(self._ordered(), task_id)
        if max_depth <= 0:
            return rows
        depth = {task_id: 0}
        kept = []
        for row in rows:
            level = depth[row.parent_id] + 1 if row.id != task_id and row.parent_id else 0
            depth[row.id] = level
            if level <= max_depth:
                kept.append(row)
        return kept

    async def progress_inputs(self, task_id: str, *, root: bool = False) -> list[ProgressInput]:
        return [
            ProgressInput(row.id, row.parent_id, row.is_group, row.status, row.progress)
            for row in await self.subtree(task_id)
        ]

    async def tree(self, root_id: str, chunk: int = 2000) -> AsyncIterator[list[TaskRow]]:
        rows = [row for row in self._ordered() if row.root_id == root_id]
        for start in range(0, len(rows), chunk):
            yield rows[start : start + chunk]

    async def list_tasks(self, flt: ListFilter) -> list[TaskRow]:
        ordered = self._ordered()
        if flt.newest_first:
            ordered.reverse()
        found = [
            row
            for row in ordered
            if (
                (not flt.after_seq or row.seq < flt.after_seq)
                if flt.newest_first
                else row.seq > flt.after_seq
            )
            and (not flt.statuses or row.status in flt.statuses)
            and (not flt.parent_id or row.parent_id == flt.parent_id)
            and (not flt.roots_only or row.parent_id is None)
            and (not flt.user_id or row.user_id == flt.user_id)
            and (not flt.name_contains or flt.name_contains.lower() in row.name.lower())
        ]
        return found[: flt.limit]

    async def active_roots(self) -> list[str]:
        active = [
            row
            for row in self._ordered()
            if row.execution_requested and row.status in (statuses.PENDING, statuses.IN_PROGRESS)
        ]
        return list(dict.fromkeys(row.root_id for row in active))

    async def stored_response(self, request_id: str) -> StoredResponse | None:
        return self.responses.get(request_id)

    async def remote_executors(self) -> list[RemoteExecutorRow]:
        return [self.remote[key] for key in sorted(self.remote)]

    async def task_log(
        self, task_id: str, attempt: int, after_sequence: int = 0
    ) -> list[LogLineRow]:
        lines = self.logs.get((task_id, attempt), [])
        return [line for line in lines if line.sequence > after_sequence]
