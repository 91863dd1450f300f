"""TaskService: the gRPC face of the use-cases (service/tasks.py).

Each method turns its request into plain arguments, calls one use-case, and turns the
records it returns into protobuf. Replies are kept within the message limit: a reply that
would exceed it is refused before anything is written, or cut into pages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message
from taskgrove.domain import reasons, wire
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

from taskgrove_server.api import page_token
from taskgrove_server.api.authentication import current_caller
from taskgrove_server.api.convert import basic_task_to_proto, one_spec, task_to_proto, tree_specs
from taskgrove_server.api.error_mapping import maps_errors
from taskgrove_server.api.log_stream import stream_task_logs
from taskgrove_server.api.watch import EventStreamer
from taskgrove_server.errors import Code, ServiceError, invalid_field
from taskgrove_server.executors import Executor
from taskgrove_server.executors.workers import WorkerPool
from taskgrove_server.identity import Caller
from taskgrove_server.ids import new_id
from taskgrove_server.service import limits
from taskgrove_server.service.idempotency import Idempotency, RequestKey
from taskgrove_server.service.specs import Created
from taskgrove_server.service.tasks import Tasks
from taskgrove_server.storage.reads import ListFilter
from taskgrove_server.storage.records import TaskRow

Context = Any  # grpc.aio.ServicerContext (grpc ships no type stubs)
Req = TypeVar("Req", bound=Message)
Reply = TypeVar("Reply", bound=Message)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
PAGE_BYTES = 4 * 1024 * 1024
"""A ListTasks page ends early once it holds this much (large results)."""
TASK_OVERHEAD_BYTES = 256
"""What a FULL-view task adds to what was sent for it (ids, times, status, etag)."""
BASIC_TASK_BYTES = 136
"""What a BASIC-view task weighs besides its name, executor and owner (three ids, status,
priority, framing)."""


def _too_large(what: str, size: int, budget: int, hint: str) -> ServiceError:
    return ServiceError(
        Code.INVALID_ARGUMENT,
        reasons.RESPONSE_TOO_LARGE,
        f"{what} would be {size} bytes or more, more than the {budget} a reply may hold; {hint}",
        metadata={"estimated_bytes": str(size), "max_bytes": str(budget)},
    )


def _name_contains(text: str) -> str:
    """ListTasks' name filter, bounded like the names it is compared with."""
    if len(text) > limits.MAX_NAME_LENGTH:
        raise invalid_field(
            "name_contains",
            reasons.NAME_TOO_LONG,
            f"at most {limits.MAX_NAME_LENGTH} characters (no task name is longer)",
        )
    if "\x00" in text:  # PostgreSQL's text cannot hold one (nor can a task name)
        raise invalid_field("name_contains", reasons.INVALID_STRING, "contains a NUL character")
    return text


def _map_bytes(entries: dict[str, str]) -> int:
    """What a map<string, string> field weighs (each entry: tags, lengths, key, value)."""
    return sum(len(key.encode()) + len(value.encode()) + 8 for key, value in entries.items())


def _text_bytes(*texts: str) -> int:
    return sum(len(text.encode()) for text in texts)


def _basic_bytes(row: TaskRow) -> int:
    """About what a task weighs in the BASIC view."""
    return BASIC_TASK_BYTES + _text_bytes(row.name, row.executor or "", row.user_id)


def _full_bytes(row: TaskRow) -> int:
    """About what a task weighs in the FULL view (JSON text standing in for Structs)."""
    return (
        TASK_OVERHEAD_BYTES
        + _text_bytes(row.name, row.executor or "", row.user_id)
        + 40 * len(row.dependencies)
        + len(json.dumps(row.inputs))
        + len(json.dumps(row.params))
    )


def _request_key(method: str, request: Message, user: str) -> RequestKey | None:
    request_id: str = getattr(request, "request_id", "")
    if not request_id:
        return None
    clone = type(request)()
    clone.CopyFrom(request)
    clone.ClearField("request_id")
    digest = hashlib.sha256(method.encode())
    digest.update(clone.SerializeToString(deterministic=True))
    return RequestKey(request_id, method, digest.hexdigest(), user)


class TaskService(task_service_pb2_grpc.TaskServiceServicer):
    def __init__(
        self,
        tasks: Tasks,
        idempotency: Idempotency,
        streamer: EventStreamer,
        *,
        max_message_bytes: int,
        auth_required: bool = False,
        workers: WorkerPool | None = None,
    ) -> None:
        self._auth_required = auth_required
        self._workers = workers
        self._tasks = tasks
        self._idempotency = idempotency
        self._streamer = streamer
        # Leave room for the reply's own framing and the largest single task.
        self._reply_budget = max_message_bytes - 64 * 1024

    def _caller(self) -> Caller:
        return current_caller(self._auth_required)

    async def _once(
        self,
        method: str,
        request: Req,
        reply_type: type[Reply],
        compute: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        """Run a mutating call once per request_id (a repeat gets the first answer); each
        caller's request ids are its own."""
        return await self._idempotency.run(
            _request_key(method, request, self._caller().user),
            compute,
            lambda reply: reply.SerializeToString(),
            reply_type.FromString,
        )

    # ------------------------------------------------------------------ creation

    @maps_errors
    async def CreateTask(
        self, request: task_service_pb2.CreateTaskRequest, context: Context
    ) -> task_pb2.Task:
        async def create() -> task_pb2.Task:
            # A fresh ref: nothing in the request can name the task being created.
            spec = one_spec(request.task, ref=new_id(), field="task")
            spec.label = "task"
            return task_to_proto(await self._tasks.create_task(spec, self._caller()))

        return await self._once("CreateTask", request, task_pb2.Task, create)

    @maps_errors
    async def CreateTaskTree(
        self, request: task_service_pb2.CreateTaskTreeRequest, context: Context
    ) -> task_service_pb2.CreateTaskTreeResponse:
        async def create() -> task_service_pb2.CreateTaskTreeResponse:
            reply = task_service_pb2.CreateTaskTreeResponse()

            def answer(created: Created) -> None:
                ids = {task.id: created.ids[task.id] for task in request.tasks if task.id}
                rows = created.in_request_order()
                # A FULL reply carries what the request did, and what the server adds.
                full = request.ByteSize() + TASK_OVERHEAD_BYTES * len(rows)
                reply.tasks.extend(self._reply_tasks(rows, request.view, full, _map_bytes(ids)))
                reply.task_ids.update(ids)

            await self._tasks.create_tree(
                tree_specs(request.tasks, new_id),
                self._caller(),
                execute=request.execute,
                before_write=answer,
            )
            return reply

        return await self._once(
            "CreateTaskTree", request, task_service_pb2.CreateTaskTreeResponse, create
        )

    @maps_errors
    async def CopyTaskTree(
        self, request: task_service_pb2.CopyTaskTreeRequest, context: Context
    ) -> task_service_pb2.CopyTaskTreeResponse:
        async def copy() -> task_service_pb2.CopyTaskTreeResponse:
            reply = task_service_pb2.CopyTaskTreeResponse()

            def answer(created: Created) -> None:
                full = sum(_full_bytes(row) for row in created.rows)
                extra = _map_bytes(created.ids)
                reply.tasks.extend(self._reply_tasks(created.rows, request.view, full, extra))
                reply.task_ids.update(created.ids)

            await self._tasks.copy(
                request.id,
                self._caller(),
                only_unfinished=request.only_unfinished,
                execute=request.execute,
                before_write=answer,
            )
            return reply

        return await self._once(
            "CopyTaskTree", request, task_service_pb2.CopyTaskTreeResponse, copy
        )

    def _reply_tasks(
        self, rows: Sequence[TaskRow], view: int, full: int, extra: int
    ) -> list[task_pb2.Task]:
        """A new tree's tasks for its reply, built before anything is written: a reply that
        could not be sent is refused while nothing is stored yet. FULL when asked (refused
        if it would not fit) or unspecified and it fits, else BASIC (refused if even that
        would not fit). `full`: about what the FULL tasks weigh; `extra`: the rest. The
        estimates depend on the request alone, so a repeated request is answered alike."""
        if view != task_service_pb2.TASK_VIEW_BASIC and full + extra <= self._reply_budget:
            return [task_to_proto(row) for row in rows]
        if view == task_service_pb2.TASK_VIEW_FULL:
            raise _too_large(
                "the FULL view", full + extra, self._reply_budget, "ask for TASK_VIEW_BASIC"
            )
        basic = sum(_basic_bytes(row) for row in rows) + extra
        if basic > self._reply_budget:
            raise _too_large(
                "even the BASIC view",
                basic,
                self._reply_budget,
                "create it in parts (a smaller tree, then subtrees under its tasks)",
            )
        return [basic_task_to_proto(row) for row in rows]

    # ------------------------------------------------------------------ reads

    @maps_errors
    async def GetTask(
        self, request: task_service_pb2.GetTaskRequest, context: Context
    ) -> task_pb2.Task:
        return task_to_proto(await self._tasks.get(request.id, self._caller()))

    @maps_errors
    async def GetTaskTree(
        self, request: task_service_pb2.GetTaskTreeRequest, context: Context
    ) -> task_service_pb2.GetTaskTreeResponse:
        rows = await self._tasks.get_tree(request.id, request.max_depth, self._caller())
        tasks = [task_to_proto(row) for row in rows]
        size = sum(task.ByteSize() for task in tasks)
        if size > self._reply_budget:
            raise _too_large(
                "this tree",
                size,
                self._reply_budget,
                "read fewer levels (max_depth) or page through ListTasks by parent_id",
            )
        return task_service_pb2.GetTaskTreeResponse(tasks=tasks)

    @maps_errors
    async def ListTasks(
        self, request: task_service_pb2.ListTasksRequest, context: Context
    ) -> task_service_pb2.ListTasksResponse:
        if request.page_size < 0:
            raise invalid_field("page_size", reasons.INVALID_PAGE_SIZE, "must be >= 0")
        try:
            wanted = sorted({wire.status_from_proto(value) for value in request.statuses})
        except KeyError:
            raise invalid_field(
                "statuses", reasons.INVALID_STATUS, "not a status (UNSPECIFIED or unknown)"
            ) from None
        newest_first = page_token.newest_first(request.order_by)
        filters: dict[str, object] = {
            "statuses": wanted,
            "parent_id": request.parent_id,
            "roots_only": request.roots_only,
            "user_id": request.user_id,
        }
        if newest_first:  # oldest-first tokens stay what they were before order_by
            filters["order_by"] = "create_time desc"
        name_contains = _name_contains(request.name_contains)
        if name_contains:  # likewise, tokens without it stay what they were
            filters["name_contains"] = name_contains
        after = page_token.decode(request.page_token, filters)
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # Taken before the read, so the page reflects at least this (a watch from it
        # misses nothing; the read may see later changes too, which it then repeats).
        sequence = self._streamer.published_through
        rows = await self._tasks.list_tasks(
            ListFilter(
                statuses=wanted,
                parent_id=request.parent_id or None,
                roots_only=request.roots_only,
                user_id=request.user_id or None,
                after_seq=after,
                limit=size + 1,
                newest_first=newest_first,
                name_contains=name_contains,
            ),
            self._caller(),
        )
        more = len(rows) > size
        page: list[task_pb2.Task] = []
        total, last_seq = 0, after
        for row in rows[:size]:
            task = task_to_proto(row)
            total += task.ByteSize()
            if page and total > min(PAGE_BYTES, self._reply_budget):
                more = True  # large tasks: the page ends early, the rest follows
                break
            page.append(task)
            last_seq = row.seq
        return task_service_pb2.ListTasksResponse(
            tasks=page,
            next_page_token=page_token.encode(last_seq, filters) if more else "",
            sequence=sequence,
        )

    @maps_errors
    async def ListExecutors(
        self, request: task_service_pb2.ListExecutorsRequest, context: Context
    ) -> task_service_pb2.ListExecutorsResponse:
        executors = [self._executor(executor) for executor in self._tasks.executors()]
        executors += [
            task_pb2.Executor(
                id=off.id,
                description=off.description,
                disabled=True,
                disabled_reason=off.how_to_enable,
            )
            for off in self._tasks.disabled_executors()
        ]
        executors.sort(key=lambda executor: executor.id)
        return task_service_pb2.ListExecutorsResponse(executors=executors)

    def _executor(self, executor: Executor) -> task_pb2.Executor:
        message = task_pb2.Executor(
            id=executor.id,
            description=executor.description,
            input_schema=wire.to_struct(dict(executor.input_schema)),
            remote=executor.remote,
        )
        if executor.remote and self._workers is not None:
            for view in self._workers.workers_serving(executor.id):
                message.workers.add(
                    worker_id=view.worker_id,
                    name=view.name,
                    labels=view.labels,
                    slots=view.slots,
                    free_slots=view.free_slots,
                )
                message.free_slots += view.free_slots
        return message

    @maps_errors
    async def ExplainTask(
        self, request: task_service_pb2.ExplainTaskRequest, context: Context
    ) -> task_service_pb2.ExplainTaskResponse:
        row, why = await self._tasks.explain(request.id, self._caller())
        response = task_service_pb2.ExplainTaskResponse(
            task=task_to_proto(row),
            reasons=why.reasons,
            summary=why.summary,
            waiting_dependencies=[
                task_service_pb2.WaitingDependency(
                    id=w.id,
                    name=w.name,
                    status=wire.status_to_proto(w.status),
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
        await self._streamer.watch(request, context, current_caller(self._auth_required))

    async def StreamTaskLogs(  # type: ignore[override]
        self, request: task_service_pb2.StreamTaskLogsRequest, context: Context
    ) -> None:
        await stream_task_logs(self._tasks, request, context, self._caller())

    # ------------------------------------------------------------------ control

    @maps_errors
    async def ExecuteTask(
        self, request: task_service_pb2.ExecuteTaskRequest, context: Context
    ) -> task_service_pb2.ExecuteTaskResponse:
        async def execute() -> task_service_pb2.ExecuteTaskResponse:
            row, scheduled = await self._tasks.execute(request.id, self._caller())
            return task_service_pb2.ExecuteTaskResponse(
                task=task_to_proto(row), scheduled_count=scheduled
            )

        return await self._once(
            "ExecuteTask", request, task_service_pb2.ExecuteTaskResponse, execute
        )

    @maps_errors
    async def CancelTask(
        self, request: task_service_pb2.CancelTaskRequest, context: Context
    ) -> task_service_pb2.CancelTaskResponse:
        async def cancel() -> task_service_pb2.CancelTaskResponse:
            row, cancelled = await self._tasks.cancel(request.id, self._caller())
            return task_service_pb2.CancelTaskResponse(
                task=task_to_proto(row), cancelled_task_ids=cancelled
            )

        return await self._once("CancelTask", request, task_service_pb2.CancelTaskResponse, cancel)

    @maps_errors
    async def RetryTask(
        self, request: task_service_pb2.RetryTaskRequest, context: Context
    ) -> task_service_pb2.RetryTaskResponse:
        async def retry() -> task_service_pb2.RetryTaskResponse:
            row, retried = await self._tasks.retry(request.id, self._caller())
            return task_service_pb2.RetryTaskResponse(
                task=task_to_proto(row), retried_task_ids=retried
            )

        return await self._once("RetryTask", request, task_service_pb2.RetryTaskResponse, retry)

    @maps_errors
    async def UpdateTask(
        self, request: task_service_pb2.UpdateTaskRequest, context: Context
    ) -> task_pb2.Task:
        async def update() -> task_pb2.Task:
            task_id = request.task.id
            wanted = one_spec(request.task, ref=task_id, field="task")
            row = await self._tasks.update(
                task_id,
                wanted,
                list(request.update_mask.paths),
                request.task.etag,
                self._caller(),
            )
            return task_to_proto(row)

        return await self._once("UpdateTask", request, task_pb2.Task, update)

    @maps_errors
    async def DeleteTask(
        self, request: task_service_pb2.DeleteTaskRequest, context: Context
    ) -> task_service_pb2.DeleteTaskResponse:
        async def delete() -> task_service_pb2.DeleteTaskResponse:
            deleted = await self._tasks.delete(request.id, request.etag, self._caller())
            return task_service_pb2.DeleteTaskResponse(deleted_task_ids=deleted)

        return await self._once("DeleteTask", request, task_service_pb2.DeleteTaskResponse, delete)
