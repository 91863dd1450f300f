"""TaskService: the gRPC face of creation, reads, execution and lifecycle control."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import RowMapping
from taskgrove import _json, statuses
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

from taskgrove_server.api import page_token
from taskgrove_server.api.convert import (
    spec_from_proto,
    subtree_progress,
    task_to_proto,
    view_of,
)
from taskgrove_server.api.error_mapping import maps_errors
from taskgrove_server.api.watch import EventStreamer
from taskgrove_server.copying import copy_specs
from taskgrove_server.creation import TaskCreator
from taskgrove_server.engine import Engine
from taskgrove_server.errors import FieldViolation, invalid, not_found
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.idempotency import Idempotency
from taskgrove_server.ids import new_id
from taskgrove_server.storage.repository import ListFilter, TaskRepository
from taskgrove_server.updating import validated_changes
from taskgrove_server.validation import TaskSpec

Context = Any  # grpc.aio.ServicerContext (grpc ships no type stubs)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _tree_specs(request: task_service_pb2.CreateTaskTreeRequest) -> list[TaskSpec]:
    specs = []
    for index, task in enumerate(request.tasks):
        # A task without a local id gets a fresh ref that nothing can refer to.
        spec = spec_from_proto(task, ref=task.id or new_id(), field=f"tasks[{index}]")
        spec.label = None if task.id else f"tasks[{index}]"
        specs.append(spec)
    return specs


def _require_id(task_id: str, field: str = "id") -> None:
    if not task_id:
        raise invalid([FieldViolation(field, "id is required", "ID_REQUIRED")])


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(
        self,
        repository: TaskRepository,
        engine: Engine,
        registry: ExecutorRegistry,
        streamer: EventStreamer,
        idempotency: Idempotency,
        *,
        max_tree_size: int,
    ) -> None:
        self._repository = repository
        self._engine = engine
        self._registry = registry
        self._streamer = streamer
        self._idempotency = idempotency
        self._creator = TaskCreator(repository, engine, registry)
        self._max_tree_size = max_tree_size

    async def _row(self, task_id: str, field: str = "id") -> RowMapping:
        _require_id(task_id, field)
        row = await self._repository.get(task_id)
        if row is None:
            raise not_found("TASK_NOT_FOUND", "task", task_id, field)
        return row

    async def _task(self, task_id: str) -> task_pb2.Task:
        return await self._to_proto(await self._row(task_id))

    async def _group_progress(self, row: Mapping[Any, Any]) -> float:
        """A group's progress is its subtree's: from the engine's memory while its tree
        runs; as stored when the group finished (nothing below changes after that without
        loading the tree); else computed from the stored subtree."""
        progress = self._engine.group_progress(row["id"])
        if progress is not None:
            return progress
        if row["status"] in statuses.TERMINAL:
            return float(row["progress"])
        rows = await self._repository.subtree(row["id"], progress_only=True)
        return subtree_progress(rows)[row["id"]]

    async def _to_proto(self, row: Mapping[Any, Any]) -> task_pb2.Task:
        if row["executor"] is not None:
            return task_to_proto(row)
        return task_to_proto(row, await self._group_progress(row))

    # ------------------------------------------------------------------ creation

    @maps_errors
    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: Context
    ) -> task_pb2.Task:
        async def create() -> task_pb2.Task:
            # A fresh ref: nothing in the request can name the task being created.
            spec = spec_from_proto(request.task, ref=new_id(), field="task")
            spec.label = "task"
            created = await self._creator.create([spec])
            return await self._task(created.top_id)

        return await self._idempotency.run("CreateTask", request, task_pb2.Task, create)

    @maps_errors
    async def CreateTaskTree(
        self, request: task_service_pb2.CreateTaskTreeRequest, context: Context
    ) -> task_service_pb2.CreateTaskTreeResponse:
        return await self._idempotency.run(
            "CreateTaskTree",
            request,
            task_service_pb2.CreateTaskTreeResponse,
            lambda: self._create_tree(request),
        )

    async def _create_tree(
        self, request: task_service_pb2.CreateTaskTreeRequest
    ) -> task_service_pb2.CreateTaskTreeResponse:
        if not request.tasks:
            raise invalid([FieldViolation("tasks", "at least one task is required", "EMPTY_TREE")])
        if len(request.tasks) > self._max_tree_size:
            raise invalid(
                [
                    FieldViolation(
                        "tasks",
                        f"{len(request.tasks)} tasks exceed the limit of {self._max_tree_size}",
                        "TREE_TOO_LARGE",
                    )
                ]
            )
        created = await self._creator.create(_tree_specs(request), execute=request.execute)
        # The rows just stored answer the request: no need to read them back.
        rows = {row["id"]: row for row in created.rows}
        to_proto = view_of(request.view)
        return task_service_pb2.CreateTaskTreeResponse(
            tasks=[to_proto(rows[created.ids[ref]]) for ref in created.refs],
            task_ids={task.id: created.ids[task.id] for task in request.tasks if task.id},
        )

    @maps_errors
    async def CopyTaskTree(
        self, request: task_service_pb2.CopyTaskTreeRequest, context: Context
    ) -> task_service_pb2.CopyTaskTreeResponse:
        async def copy() -> task_service_pb2.CopyTaskTreeResponse:
            _require_id(request.id)
            rows = await self._repository.subtree(request.id)
            if not rows:
                raise not_found("TASK_NOT_FOUND", "task", request.id)
            specs = copy_specs(rows, only_unfinished=request.only_unfinished)
            created = await self._creator.create(specs, execute=request.execute)
            to_proto = view_of(request.view)
            return task_service_pb2.CopyTaskTreeResponse(
                tasks=[to_proto(row) for row in created.rows], task_ids=created.ids
            )

        return await self._idempotency.run(
            "CopyTaskTree", request, task_service_pb2.CopyTaskTreeResponse, copy
        )

    # ------------------------------------------------------------------ reads

    @maps_errors
    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: Context
    ) -> task_pb2.Task:
        return await self._task(request.id)

    @maps_errors
    async def GetTaskTree(
        self, request: task_service_pb2.GetTaskTreeRequest, context: Context
    ) -> task_service_pb2.GetTaskTreeResponse:
        if request.max_depth < 0:
            raise invalid([FieldViolation("max_depth", "must be >= 0", "INVALID_DEPTH")])
        _require_id(request.id)
        rows = await self._repository.subtree(request.id, request.max_depth)
        if not rows:
            raise not_found("TASK_NOT_FOUND", "task", request.id)
        # Group progress needs the whole subtree, even when fewer levels are returned.
        if request.max_depth == 0:
            full = rows
        else:
            full = await self._repository.subtree(request.id, progress_only=True)
        progress = subtree_progress(full)
        return task_service_pb2.GetTaskTreeResponse(
            tasks=[task_to_proto(row, progress.get(row["id"])) for row in rows]
        )

    @maps_errors
    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Context
    ) -> task_service_pb2.ListTasksResponse:
        if request.page_size < 0:
            raise invalid([FieldViolation("page_size", "must be >= 0", "INVALID_PAGE_SIZE")])
        try:
            wanted = sorted({statuses.from_proto(value) for value in request.statuses})
        except KeyError:
            raise invalid(
                [
                    FieldViolation(
                        "statuses", "TASK_STATUS_UNSPECIFIED is not a status", "INVALID_STATUS"
                    )
                ]
            ) from None
        filters: dict[str, object] = {
            "statuses": wanted,
            "parent_id": request.parent_id,
            "roots_only": request.roots_only,
            "user_id": request.user_id,
        }
        after = page_token.decode(request.page_token, filters)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        rows = await self._repository.list_tasks(
            ListFilter(
                statuses=wanted,
                parent_id=request.parent_id or None,
                roots_only=request.roots_only,
                user_id=request.user_id or None,
                after_seq=after,
                limit=size + 1,
            )
        )
        more = len(rows) > size
        rows = rows[:size]
        return task_service_pb2.ListTasksResponse(
            tasks=[await self._to_proto(row) for row in rows],
            next_page_token=page_token.encode(rows[-1]["seq"], filters) if more else "",
        )

    @maps_errors
    async def ListExecutors(
        self, request: task_service_pb2.ListExecutorsRequest, context: Context
    ) -> task_service_pb2.ListExecutorsResponse:
        return task_service_pb2.ListExecutorsResponse(
            executors=[
                task_pb2.Executor(
                    id=executor.id,
                    description=executor.description,
                    input_schema=_json.to_struct(dict(executor.input_schema)),
                )
                for executor in self._registry
            ]
        )

    @maps_errors
    async def ExplainTask(
        self, request: task_service_pb2.ExplainTaskRequest, context: Context
    ) -> task_service_pb2.ExplainTaskResponse:
        row = await self._row(request.id)
        why = await self._engine.explain(row["id"], row["root_id"])
        response = task_service_pb2.ExplainTaskResponse(
            task=await self._task(row["id"]),
            reasons=why.reasons,
            summary=why.summary,
            waiting_dependencies=[
                task_service_pb2.WaitingDependency(
                    id=w.id,
                    name=w.name,
                    status=statuses.to_proto(w.status),
                    required=w.required,
                    execution_requested=w.execution_requested,
                )
                for w in why.waiting
            ],
            queue_position=why.queue_position,
            running=why.running,
            concurrency_limit=why.concurrency_limit,
        )
        if why.retry_at_us is not None:
            response.retry_time.FromMicroseconds(why.retry_at_us)
        return response

    # grpc.aio streams either by yielding or by `context.write`; the latter lets the
    # streamer abandon a blocked write (see api/watch.py), which the stub's type misses.
    async def WatchEvents(  # type: ignore[override]
        self, request: task_service_pb2.WatchEventsRequest, context: Context
    ) -> None:
        await self._streamer.watch(request, context)

    # ------------------------------------------------------------------ control

    @maps_errors
    async def ExecuteTask(
        self, request: task_service_pb2.ExecuteTaskRequest, context: Context
    ) -> task_service_pb2.ExecuteTaskResponse:
        async def execute() -> task_service_pb2.ExecuteTaskResponse:
            row = await self._row(request.id)
            scheduled = await self._engine.execute(row["id"], row["root_id"])
            return task_service_pb2.ExecuteTaskResponse(
                task=await self._task(request.id), scheduled_count=scheduled
            )

        return await self._idempotency.run(
            "ExecuteTask", request, task_service_pb2.ExecuteTaskResponse, execute
        )

    @maps_errors
    async def CancelTask(
        self, request: task_service_pb2.CancelTaskRequest, context: Context
    ) -> task_service_pb2.CancelTaskResponse:
        async def cancel() -> task_service_pb2.CancelTaskResponse:
            row = await self._row(request.id)
            cancelled = await self._engine.cancel(row["id"], row["root_id"])
            return task_service_pb2.CancelTaskResponse(
                task=await self._task(request.id), cancelled_task_ids=cancelled
            )

        return await self._idempotency.run(
            "CancelTask", request, task_service_pb2.CancelTaskResponse, cancel
        )

    @maps_errors
    async def RetryTask(
        self, request: task_service_pb2.RetryTaskRequest, context: Context
    ) -> task_service_pb2.RetryTaskResponse:
        async def retry() -> task_service_pb2.RetryTaskResponse:
            row = await self._row(request.id)
            retried = await self._engine.retry(row["id"], row["root_id"])
            return task_service_pb2.RetryTaskResponse(
                task=await self._task(request.id), retried_task_ids=retried
            )

        return await self._idempotency.run(
            "RetryTask", request, task_service_pb2.RetryTaskResponse, retry
        )

    @maps_errors
    async def UpdateTask(
        self, request: task_service_pb2.UpdateTaskRequest, context: Context
    ) -> task_pb2.Task:
        async def update() -> task_pb2.Task:
            row = await self._row(request.task.id, "task.id")
            paths = list(request.update_mask.paths)
            changes = await validated_changes(
                row, request.task, paths, self._creator, self._registry
            )
            await self._engine.update(row["id"], row["root_id"], changes, request.task.etag)
            return await self._task(row["id"])

        return await self._idempotency.run("UpdateTask", request, task_pb2.Task, update)

    @maps_errors
    async def DeleteTask(
        self, request: task_service_pb2.DeleteTaskRequest, context: Context
    ) -> task_service_pb2.DeleteTaskResponse:
        async def delete() -> task_service_pb2.DeleteTaskResponse:
            row = await self._row(request.id)
            deleted = await self._engine.delete(row["id"], row["root_id"], request.etag)
            return task_service_pb2.DeleteTaskResponse(deleted_task_ids=deleted)

        return await self._idempotency.run(
            "DeleteTask", request, task_service_pb2.DeleteTaskResponse, delete
        )
