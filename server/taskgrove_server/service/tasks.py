"""The use-cases of TaskService, one method each: plain records in, typed records out.

The API layer turns protobuf into these arguments and their results back into protobuf;
everything a request means happens here and below.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from taskgrove.domain import reasons, statuses
from taskgrove.domain.aggregation import ProgressInput, group_progress

from taskgrove_server.engine import Engine
from taskgrove_server.engine.explain import Explanation
from taskgrove_server.errors import Code, ServiceError, invalid_field, not_found
from taskgrove_server.executors import DisabledExecutor, Executor, ExecutorRegistry
from taskgrove_server.identity import Caller
from taskgrove_server.logs.task_logs import LogChunk
from taskgrove_server.service.copying import copy_specs
from taskgrove_server.service.creation import RefreshExecutors, TaskCreator
from taskgrove_server.service.specs import BeforeWrite, Created, TaskSpec
from taskgrove_server.service.updating import validated_changes
from taskgrove_server.storage.reads import ListFilter
from taskgrove_server.storage.records import TaskRow
from taskgrove_server.storage.store import TaskStore
from taskgrove_server.storage.writer import storage_unavailable


class Tasks:
    def __init__(
        self,
        store: TaskStore,
        engine: Engine,
        registry: ExecutorRegistry,
        *,
        max_tree_size: int,
        refresh_executors: RefreshExecutors | None = None,
    ) -> None:
        self._reads = store.reads
        self._writer = store.writer
        self._engine = engine
        self._registry = registry
        self._creator = TaskCreator(store.reads, engine, registry, refresh_executors)
        self.max_tree_size = max_tree_size

    # ------------------------------------------------------------------ creation

    async def create_task(self, spec: TaskSpec, caller: Caller) -> TaskRow:
        """The task as stored (a new task has no children: its row is the whole answer)."""
        self.require_storage()
        return (await self._creator.create(_owned([spec], caller))).top

    async def create_tree(
        self,
        specs: Sequence[TaskSpec],
        caller: Caller,
        *,
        execute: bool,
        before_write: BeforeWrite | None = None,
    ) -> Created:
        """Create a tree atomically; with `execute`, creation and the execution request
        are one commit (a tree asked to run always runs). `before_write`: see
        `TaskCreator.create`."""
        if not specs:
            raise invalid_field("tasks", reasons.EMPTY_TREE, "at least one task is required")
        if len(specs) > self.max_tree_size:
            raise invalid_field(
                "tasks",
                reasons.TREE_TOO_LARGE,
                f"{len(specs)} tasks exceed the limit of {self.max_tree_size}",
            )
        self.require_storage()
        return await self._creator.create(
            _owned(specs, caller), execute=execute, before_write=before_write
        )

    async def copy(
        self,
        task_id: str,
        caller: Caller,
        *,
        only_unfinished: bool,
        execute: bool,
        before_write: BeforeWrite | None = None,
    ) -> Created:
        """Copy a stored subtree as a new tree; `before_write`: see `TaskCreator.create`."""
        _require_id(task_id)
        rows = await self._reads.subtree(task_id)
        if not rows or not caller.writes(rows[0].user_id):
            raise not_found(reasons.TASK_NOT_FOUND, "task", task_id)
        specs = copy_specs(rows, only_unfinished=only_unfinished)
        self.require_storage()
        return await self._creator.create(specs, execute=execute, before_write=before_write)

    # ------------------------------------------------------------------ reads

    async def get(self, task_id: str, caller: Caller, field: str = "id") -> TaskRow:
        """The task as stored, groups with their subtree's progress."""
        return await self._with_progress(await self._row(task_id, caller.read_scope, field))

    async def get_tree(self, task_id: str, max_depth: int, caller: Caller) -> list[TaskRow]:
        if max_depth < 0:
            raise invalid_field("max_depth", reasons.INVALID_DEPTH, "must be >= 0")
        _require_id(task_id)
        rows = await self._reads.subtree(task_id, max_depth)
        if not rows or not caller.reads(rows[0].user_id):
            raise not_found(reasons.TASK_NOT_FOUND, "task", task_id)
        # Group progress needs the whole subtree, even when fewer levels are returned.
        if max_depth == 0:
            progress = group_progress(
                [_progress_input(row) for row in rows]  # the rows are the whole subtree
            )
        else:
            progress = group_progress(await self._subtree_progress(rows[0]))
        return [replace(row, progress=progress[row.id]) if row.is_group else row for row in rows]

    async def list_tasks(self, flt: ListFilter, caller: Caller) -> list[TaskRow]:
        """Tasks matching `flt`, only the caller's own unless it may read everyone's."""
        scope = caller.read_scope
        if scope is not None:
            _require_own_user_id(flt.user_id or "", caller, "user_id")
            flt = replace(flt, user_id=scope)
        # One subtree read serves every group of the page inside it: a page of a deep
        # chain costs one walk, not one per level (which was quadratic in the depth).
        computed: dict[str, float] = {}
        return [
            await self._with_progress(row, computed) for row in await self._reads.list_tasks(flt)
        ]

    def executors(self) -> list[Executor]:
        return list(self._registry)

    def disabled_executors(self) -> list[DisabledExecutor]:
        """Executors this server has switched off (listed with how to enable them)."""
        return self._registry.disabled()

    async def explain(self, task_id: str, caller: Caller) -> tuple[TaskRow, Explanation]:
        row = await self._row(task_id, caller.read_scope)
        why = await self._engine.explain(row.id, row.root_id)
        return await self.get(row.id, caller), why

    async def logs(
        self, task_id: str, attempt: int, follow: bool, caller: Caller
    ) -> AsyncGenerator[LogChunk, None]:
        """A task's log lines (see `TaskLogs.stream`); refuses bad requests before the
        first line."""
        if attempt < 0:
            raise invalid_field("attempt", reasons.INVALID_ATTEMPT, "must be >= 0")
        row = await self._row(task_id, caller.read_scope, "task_id")

        async def state() -> tuple[str, int] | None:
            now = await self._reads.get(row.id)
            return (now.status, now.attempt) if now is not None else None

        return self._engine.logs.stream(row.id, attempt, follow=follow, state=state)

    # ------------------------------------------------------------------ control

    async def execute(self, task_id: str, caller: Caller) -> tuple[TaskRow, int]:
        self.require_storage()
        row = await self._row(task_id, caller.write_scope)
        scheduled = await self._engine.execute(row.id, row.root_id)
        return await self.get(task_id, caller), scheduled

    async def cancel(self, task_id: str, caller: Caller) -> tuple[TaskRow, list[str]]:
        self.require_storage()
        row = await self._row(task_id, caller.write_scope)
        cancelled = await self._engine.cancel(row.id, row.root_id)
        return await self.get(task_id, caller), cancelled

    async def retry(self, task_id: str, caller: Caller) -> tuple[TaskRow, list[str]]:
        self.require_storage()
        row = await self._row(task_id, caller.write_scope)
        retried = await self._engine.retry(row.id, row.root_id)
        return await self.get(task_id, caller), retried

    async def update(
        self, task_id: str, wanted: TaskSpec, paths: list[str], etag: str, caller: Caller
    ) -> TaskRow:
        self.require_storage()
        row = await self._row(task_id, caller.write_scope, "task.id")
        changes = await validated_changes(row, wanted, paths, self._creator, self._registry)
        await self._engine.update(row.id, row.root_id, changes, etag)
        return await self.get(row.id, caller)

    async def delete(self, task_id: str, etag: str, caller: Caller) -> list[str]:
        self.require_storage()
        row = await self._row(task_id, caller.write_scope)
        return await self._engine.delete(row.id, row.root_id, etag)

    # ------------------------------------------------------------------ helpers

    def require_storage(self) -> None:
        """New work waits for storage: refused (UNAVAILABLE) while it is failing."""
        if not self._writer.available:
            raise storage_unavailable()

    async def _row(self, task_id: str, scope: str | None, field: str = "id") -> TaskRow:
        """The stored task; another owner's (outside `scope`) is answered as absent."""
        _require_id(task_id, field)
        row = await self._reads.get(task_id)
        if row is None or scope not in (None, row.user_id):
            raise not_found(reasons.TASK_NOT_FOUND, "task", task_id, field)
        return row

    async def _with_progress(
        self, row: TaskRow, computed: dict[str, float] | None = None
    ) -> TaskRow:
        """A group's progress is its subtree's: from the engine's memory while its tree
        runs; as stored once the group finished (nothing below changes after that without
        loading the tree); else computed from the stored subtree. `computed` keeps the
        progress of every group of the subtrees read so far (one read's results)."""
        if not row.is_group:
            return row
        progress = self._engine.group_progress(row.id)
        if progress is None:
            if row.status in statuses.TERMINAL:
                return row
            known = computed if computed is not None else {}
            if row.id not in known:
                known.update(group_progress(await self._subtree_progress(row)))
            progress = known[row.id]
        return replace(row, progress=progress)

    async def _subtree_progress(self, row: TaskRow) -> list[ProgressInput]:
        if not row.has_children:
            return [_progress_input(row)]
        return await self._reads.progress_inputs(row.id, root=row.parent_id is None)


def _owned(specs: Sequence[TaskSpec], caller: Caller) -> Sequence[TaskSpec]:
    """New tasks belong to the caller: a request may name no other owner, unless the
    caller may choose (an admin; everyone while authentication is off). An admin's own
    new root is its own."""
    if not caller.authenticated:
        return specs
    if caller.write_scope is None:
        top = next((spec for spec in specs if spec.parent_id is None), None)
        if top is not None and not top.user_id:
            top.user_id = caller.user
        return specs
    for spec in specs:
        _require_own_user_id(spec.user_id, caller, f"{spec.field}.user_id")
        spec.user_id = caller.user
    return specs


def _require_own_user_id(user_id: str, caller: Caller, field: str) -> None:
    if user_id and user_id != caller.user:
        raise ServiceError(
            Code.PERMISSION_DENIED,
            reasons.USER_ID_NOT_CALLER,
            f"{field} names another user; leave it empty (the caller's) or set it to the caller",
            metadata={"field": field},
        )


def _progress_input(row: TaskRow) -> ProgressInput:
    return ProgressInput(row.id, row.parent_id, row.is_group, row.status, row.progress)


def _require_id(task_id: str, field: str = "id") -> None:
    if not task_id:
        raise invalid_field(field, reasons.ID_REQUIRED, "id is required")
    if len(task_id) > 64:
        # Stored ids are 36-character UUIDs: a longer one names nothing.
        raise not_found(reasons.TASK_NOT_FOUND, "task", task_id[:64] + "...", field)
