"""TaskService: the gRPC face of creation, reads and execution."""

from __future__ import annotations

from typing import Any

from taskgrove import _json, statuses
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

from taskgrove_server.api import page_token
from taskgrove_server.api.convert import spec_from_proto, subtree_progress, task_to_proto
from taskgrove_server.api.error_mapping import maps_errors
from taskgrove_server.api.watch import EventStreamer
from taskgrove_server.creation import TaskCreator
from taskgrove_server.engine import Engine
from taskgrove_server.errors import FieldViolation, invalid, not_found
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.storage.repository import ListFilter, TaskRepository

Context = Any  # grpc.aio.ServicerContext (grpc ships no type stubs)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(
        self,
        repository: TaskRepository,
        engine: Engine,
        registry: ExecutorRegistry,
        streamer: EventStreamer,
        *,
        max_tree_size: int,
    ) -> None:
        self._streamer = streamer
        self._repository = repository
        self._engine = engine
        self._registry = registry
        self._creator = TaskCreator(repository, engine, registry)
        self._max_tree_size = max_tree_size

    async def _task(self, task_id: str, field: str = "id") -> task_pb2.Task:
        if not task_id:
            raise invalid([FieldViolation(field, "id is required", "ID_REQUIRED")])
        row = await self._repository.get(task_id)
        if row is None:
            raise not_found("TASK_NOT_FOUND", "task", task_id, field)
        if row["executor"] is not None:
            return task_to_proto(row)
        # A group's progress is its subtree's, computed on read.
        rows = await self._repository.subtree(task_id)
        return task_to_proto(row, subtree_progress(rows)[task_id])

    @maps_errors
    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: Context
    ) -> task_pb2.Task:
        spec = spec_from_proto(request.task, ref="task", field="task")
        created = await self._creator.create([spec])
        return await self._task(created.top_id)

    @maps_errors
    async def CreateTaskTree(
        self, request: task_service_pb2.CreateTaskTreeRequest, context: Context
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
        specs = [
            spec_from_proto(task, ref=task.id or f"tasks[{index}]", field=f"tasks[{index}]")
            for index, task in enumerate(request.tasks)
        ]
        created = await self._creator.create(specs)
        if request.execute:
            await self._engine.execute(created.top_id, created.root_id)
        rows = await self._repository.get_many(created.ids.values())
        return task_service_pb2.CreateTaskTreeResponse(
            tasks=[task_to_proto(rows[created.ids[spec.ref]]) for spec in specs],
            task_ids={
                task.id: created.ids[spec.ref]
                for task, spec in zip(request.tasks, specs, strict=True)
                if task.id
            },
        )

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
        if not request.id:
            raise invalid([FieldViolation("id", "id is required", "ID_REQUIRED")])
        rows = await self._repository.subtree(request.id, request.max_depth)
        if not rows:
            raise not_found("TASK_NOT_FOUND", "task", request.id)
        # Group progress needs the whole subtree, even when fewer levels are returned.
        full = rows if request.max_depth == 0 else await self._repository.subtree(request.id)
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
            wanted = [statuses.from_proto(value) for value in request.statuses]
        except KeyError:
            raise invalid(
                [
                    FieldViolation(
                        "statuses", "TASK_STATUS_UNSPECIFIED is not a status", "INVALID_STATUS"
                    )
                ]
            ) from None
        filters: dict[str, object] = {
            "statuses": sorted(wanted),
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
            tasks=[task_to_proto(row) for row in rows],
            next_page_token=page_token.encode(rows[-1]["seq"], filters) if more else "",
        )

    @maps_errors
    async def ExecuteTask(
        self, request: task_service_pb2.ExecuteTaskRequest, context: Context
    ) -> task_service_pb2.ExecuteTaskResponse:
        if not request.id:
            raise invalid([FieldViolation("id", "id is required", "ID_REQUIRED")])
        row = await self._repository.get(request.id)
        if row is None:
            raise not_found("TASK_NOT_FOUND", "task", request.id)
        scheduled = await self._engine.execute(row["id"], row["root_id"])
        return task_service_pb2.ExecuteTaskResponse(
            task=await self._task(request.id), scheduled_count=scheduled
        )

    # grpc.aio streams either by yielding or by `context.write`; the latter lets the
    # streamer abandon a blocked write (see api/watch.py), which the stub's type misses.
    async def WatchEvents(  # type: ignore[override]
        self, request: task_service_pb2.WatchEventsRequest, context: Context
    ) -> None:
        await self._streamer.watch(request, context)

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
