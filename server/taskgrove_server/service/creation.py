"""Creating tasks: look up what a request refers to, validate it whole, store it in one
commit (executing it too when asked)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence

from taskgrove.domain import statuses

from taskgrove_server.clock import now_us
from taskgrove_server.engine import Engine
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.ids import new_id
from taskgrove_server.service.specs import BeforeWrite, Created, TaskSpec
from taskgrove_server.service.validation import (
    ExistingTask,
    ValidatedTree,
    check_depth,
    validate_new_tasks,
)
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.records import TaskLinks, TaskRow

DEFAULT_RETRY_BACKOFF_MS = 1000


def _existing(row: TaskRow | TaskLinks, children: Sequence[str] = ()) -> ExistingTask:
    return ExistingTask(
        id=row.id,
        root_id=row.root_id,
        user_id=row.user_id,
        is_group=row.is_group,
        dependencies=tuple(dep["id"] for dep in row.dependencies),
        children=tuple(children),
    )


RefreshExecutors = Callable[[], Awaitable[None]]
"""Replicas: read again the executors workers registered (perhaps on another replica)."""


class TaskCreator:
    def __init__(
        self,
        reads: TaskReads,
        engine: Engine,
        registry: ExecutorRegistry,
        refresh_executors: RefreshExecutors | None = None,
    ) -> None:
        self._reads = reads
        self._engine = engine
        self._registry = registry
        self._refresh_executors = refresh_executors

    async def create(
        self,
        specs: Sequence[TaskSpec],
        *,
        execute: bool = False,
        before_write: BeforeWrite | None = None,
    ) -> Created:
        """Validate `specs` as one tree and store it atomically (raises ServiceError);
        with `execute`, the same commit requests its execution. `before_write` sees what
        is about to be stored and may refuse it (e.g. a reply that would be too large)."""
        existing, lineage = await self._referenced(specs)
        refresh = self._refresh_executors
        if refresh is not None and any(
            spec.executor and spec.executor not in self._registry for spec in specs
        ):
            await refresh()  # a worker may have registered it on another replica
        tree = validate_new_tasks(specs, existing, self._registry)
        check_depth(tree, len(lineage))
        rows, ids = _rows(tree, execute=execute)
        created = Created(rows=rows, ids=ids, refs=[spec.ref for spec in specs])
        if before_write is not None:
            before_write(created)
        # A large tree's specs are not needed any more: let them go before the write.
        del specs, existing, tree
        await self._engine.create(rows, lineage=lineage)
        return created

    async def _referenced(
        self, specs: Sequence[TaskSpec]
    ) -> tuple[dict[str, ExistingTask], list[str]]:
        """The stored tasks new `specs` name, for validation, and the lineage (ids from
        the parent they hang from up to its root).

        New tasks can close a waits-for cycle through stored tasks only by depending on
        one that waits for the parent they are attached under (nothing stored depends on
        them yet): one walk backwards from that parent tells whether any does, whatever
        the length of the chains behind the dependencies. Only then is everything the
        cycle could pass through read (`load_referenced`), to name it.
        """
        local = {spec.ref for spec in specs}
        parents = {
            s.parent_id for s in specs if s.parent_id is not None and s.parent_id not in local
        }
        deps = {dep for s in specs for dep, _ in s.dependencies if dep not in local}
        attach = next(iter(parents)) if len(parents) == 1 else None
        if attach is None:  # a new root (or a request validation refuses)
            rows = await self._reads.get_many(parents | deps)
            return {task_id: _existing(row) for task_id, row in rows.items()}, []
        found = await self._reads.referenced(attach, deps)
        existing = {task_id: _existing(row) for task_id, row in found.rows.items()}
        if not found.waiting.isdisjoint(deps):
            existing = await self.load_referenced(specs)
        return existing, found.lineage

    async def load_referenced(self, specs: Sequence[TaskSpec]) -> dict[str, ExistingTask]:
        """Stored tasks the request names, plus everything a waits-for cycle through them
        could pass through, read level by level: UpdateTask's check (an updated task may
        have dependents), and how creation names a cycle it knows is there.

        A cycle through stored tasks must come back into the request's tasks, which is
        only possible through the parent they are attached under and its ancestors (groups
        wait for their subtree). So the walk runs only when the tree is attached under a
        parent and depends on stored tasks.
        """
        local = {spec.ref for spec in specs}
        parents = {
            s.parent_id for s in specs if s.parent_id is not None and s.parent_id not in local
        }
        deps = {dep for s in specs for dep, _ in s.dependencies if dep not in local}
        rows = await self._reads.get_many(parents | deps)
        existing = {task_id: _existing(row) for task_id, row in rows.items()}
        attach = [task_id for task_id in parents if task_id in rows]
        if not attach or not deps:
            return existing
        # Ancestors of the attach point, each with its child on the chain.
        chain_rows = {row.id: row for row in await self._reads.lineage(attach[0])}
        chain = list(chain_rows)
        for child, ancestor in itertools.pairwise(chain):
            if ancestor in chain_rows:
                existing[ancestor] = _existing(chain_rows[ancestor], [child])
        # Everything reachable from the stored dependencies, with full children.
        frontier = {dep for dep in deps if dep in rows}
        expanded: set[str] = set()
        while frontier:
            expanded |= frontier
            found = await self._reads.get_many(frontier)
            children = await self._reads.children_of(found)
            frontier = set()
            for task_id, row in found.items():
                task = _existing(row, children.get(task_id, []))
                if task_id in existing and existing[task_id].children:
                    # Keep the chain child too (it may be a new task's parent).
                    merged = tuple(dict.fromkeys(task.children + existing[task_id].children))
                    task = ExistingTask(
                        task.id,
                        task.root_id,
                        task.user_id,
                        task.is_group,
                        task.dependencies,
                        merged,
                    )
                existing[task_id] = task
                frontier |= set(task.dependencies) | set(task.children)
            frontier -= expanded
        return existing


def _rows(tree: ValidatedTree, *, execute: bool) -> tuple[list[TaskRow], dict[str, str]]:
    ids = {task.spec.ref: new_id() for task in tree.tasks}
    parent = tree.attach_parent
    root_id = parent.root_id if parent else ids[tree.tasks[0].spec.ref]
    with_children = {t.spec.parent_id for t in tree.tasks if t.parent_is_local}
    now = now_us()
    rows = []
    for task in tree.tasks:
        spec = task.spec
        rows.append(
            TaskRow(
                id=ids[spec.ref],
                parent_id=ids.get(spec.parent_id, spec.parent_id) if spec.parent_id else None,
                root_id=root_id,
                user_id=task.user_id,
                name=spec.name,
                executor=task.executor,
                priority=task.priority,
                dependencies=[
                    {"id": ids.get(dep, dep), "required": required}
                    for dep, required in spec.dependencies
                ],
                inputs=spec.inputs,
                params=spec.params,
                status=statuses.PENDING,
                execution_requested=execute,
                result=None,
                error=None,
                progress=0.0,
                progress_message="",
                attempt=0,
                max_attempts=spec.max_attempts or 1,
                retry_backoff_ms=DEFAULT_RETRY_BACKOFF_MS
                if spec.retry_backoff_ms is None
                else spec.retry_backoff_ms,
                timeout_ms=spec.timeout_ms,
                original_task_id=spec.original_task_id,
                has_children=spec.ref in with_children,
                created_us=now,
                started_us=None,
                updated_us=now,
                ended_us=None,
                version=1,
            )
        )
    return rows, ids
