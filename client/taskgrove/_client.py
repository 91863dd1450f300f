"""The async client: one method per RPC, SDK models in and out, typed exceptions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import replace
from datetime import UTC, timedelta
from typing import Any, TypeVar

import grpc

from taskgrove._channel import new_channel
from taskgrove._config import ClientConfig
from taskgrove._errors import TaskgroveError, from_rpc_error
from taskgrove._models import (
    Executor,
    Explanation,
    LogLine,
    Snapshot,
    Task,
    TaskEvent,
    WaitingDependency,
)
from taskgrove._watch import watch_request, watch_responses
from taskgrove.domain import wire
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

T = TypeVar("T")


def _seconds(value: float | timedelta | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def task_message(
    *,
    name: str,
    id: str = "",
    user_id: str = "",
    parent_id: str | None = None,
    executor: str | None = None,
    priority: int | None = None,
    dependencies: Iterable[Mapping[str, Any] | str] = (),
    inputs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    max_attempts: int = 0,
    retry_backoff: float | timedelta | None = None,
    timeout: float | timedelta | None = None,
) -> task_pb2.Task:
    """A `Task` message for creation. Dependencies are ids or {"id", "required"} dicts."""
    message = task_pb2.Task(
        id=id,
        name=name,
        user_id=user_id,
        parent_id=parent_id or "",
        executor=executor or "",
        inputs=wire.to_struct(dict(inputs or {})),
        params=wire.to_struct(dict(params or {})),
        max_attempts=max_attempts,
    )
    if priority is not None:
        message.priority = priority
    for dep in dependencies:
        if isinstance(dep, str):
            message.dependencies.add(id=dep)
        else:
            entry = message.dependencies.add(id=str(dep["id"]))
            if "required" in dep:
                entry.required = bool(dep["required"])
    if (backoff := _seconds(retry_backoff)) is not None:
        message.retry_backoff.FromTimedelta(backoff)
    if (limit := _seconds(timeout)) is not None:
        message.timeout.FromTimedelta(limit)
    return message


class AsyncClient:
    """Connects lazily; use as `async with AsyncClient(...) as client:` or call `close()`."""

    def __init__(
        self, address: str | None = None, *, config: ClientConfig | None = None, **settings: Any
    ) -> None:
        """`config` (else `ClientConfig.from_env(address)`), with `settings` overriding its
        fields (e.g. `timeout=5`, `token=...`)."""
        base = config if config is not None else ClientConfig.from_env(address)
        if address and config is not None:
            settings["address"] = address
        self.config = replace(base, **settings) if settings else base
        self._channel: grpc.aio.Channel | None = None
        self._stub: task_service_pb2_grpc.TaskServiceStub | None = None

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def stub(self) -> task_service_pb2_grpc.TaskServiceStub:
        """The raw generated stub, for what the friendly methods do not cover."""
        if self._stub is None:
            self._channel = new_channel(self.config)
            self._stub = task_service_pb2_grpc.TaskServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    # ------------------------------------------------------------------ RPCs

    async def create_task(self, *, name: str, request_id: str = "", **fields: Any) -> Task:
        """Create one task (not run until executed). See `task_message` for the fields.
        `request_id` makes the call idempotent: a repeat returns the first answer."""
        request = task_service_pb2.CreateTaskRequest(
            task=task_message(name=name, **fields), request_id=request_id
        )
        return Task.from_proto(
            await self._call(self.stub.CreateTask(request, timeout=self.config.timeout))
        )

    async def create_task_tree(
        self,
        tasks: Sequence[Mapping[str, Any] | task_pb2.Task],
        *,
        execute: bool = False,
        request_id: str = "",
        basic: bool = False,
    ) -> dict[str, Task]:
        """Create a tree atomically. Each task has a client-local `id` that `parent_id` and
        dependencies of the others may use. Returns the created tasks by local id; with
        `basic`, only their ids, names, places and statuses (for large trees)."""
        messages = [t if isinstance(t, task_pb2.Task) else task_message(**t) for t in tasks]
        request = task_service_pb2.CreateTaskTreeRequest(
            tasks=messages,
            execute=execute,
            request_id=request_id,
            view=task_service_pb2.TASK_VIEW_BASIC if basic else task_service_pb2.TASK_VIEW_FULL,
        )
        reply = await self._call(self.stub.CreateTaskTree(request, timeout=self.config.timeout))
        return {
            message.id or f"tasks[{index}]": Task.from_proto(created)
            for index, (message, created) in enumerate(zip(messages, reply.tasks, strict=True))
        }

    async def get_task(self, task_id: str) -> Task:
        request = task_service_pb2.GetTaskRequest(id=task_id)
        return Task.from_proto(
            await self._call(self.stub.GetTask(request, timeout=self.config.timeout))
        )

    async def get_task_tree(self, task_id: str, *, max_depth: int = 0) -> list[Task]:
        """The task and its descendants, parents before children."""
        request = task_service_pb2.GetTaskTreeRequest(id=task_id, max_depth=max_depth)
        reply = await self._call(self.stub.GetTaskTree(request, timeout=self.config.timeout))
        return [Task.from_proto(task) for task in reply.tasks]

    async def list_tasks_page(
        self,
        *,
        statuses: Sequence[str] = (),
        parent_id: str = "",
        roots_only: bool = False,
        user_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        order_by: str = "",
        name_contains: str = "",
    ) -> tuple[list[Task], str]:
        """One page of tasks and the next page's token ("" on the last page).
        `order_by`: "create_time" (oldest first, the default) or "create_time desc";
        `name_contains`: only names containing it, ignoring case, taken literally."""
        request = task_service_pb2.ListTasksRequest(
            order_by=order_by,
            name_contains=name_contains,
            statuses=[wire.status_to_proto(status) for status in statuses],
            parent_id=parent_id,
            roots_only=roots_only,
            user_id=user_id,
            page_size=page_size,
            page_token=page_token,
        )
        reply = await self._call(self.stub.ListTasks(request, timeout=self.config.timeout))
        return [Task.from_proto(task) for task in reply.tasks], reply.next_page_token

    async def list_tasks(self, **filters: Any) -> AsyncIterator[Task]:
        """Every matching task, oldest first (`order_by="create_time desc"`: newest
        first), fetching pages as needed."""
        token = ""
        while True:
            page, token = await self.list_tasks_page(page_token=token, **filters)
            for task in page:
                yield task
            if not token:
                return

    async def execute_task(self, task_id: str, *, request_id: str = "") -> Task:
        """Start the task and its whole subtree; returns the task as it is now."""
        request = task_service_pb2.ExecuteTaskRequest(id=task_id, request_id=request_id)
        reply = await self._call(self.stub.ExecuteTask(request, timeout=self.config.timeout))
        return Task.from_proto(reply.task)

    async def cancel_task(self, task_id: str, *, request_id: str = "") -> list[str]:
        """Cancel the task and everything unfinished below it (running executors are
        interrupted); returns the ids this call cancelled. Idempotent."""
        request = task_service_pb2.CancelTaskRequest(id=task_id, request_id=request_id)
        reply = await self._call(self.stub.CancelTask(request, timeout=self.config.timeout))
        return list(reply.cancelled_task_ids)

    async def retry_task(self, task_id: str, *, request_id: str = "") -> list[str]:
        """Run a failed or cancelled task again, with its failed or cancelled descendants
        and the dependents that failed because of them; returns their ids."""
        request = task_service_pb2.RetryTaskRequest(id=task_id, request_id=request_id)
        reply = await self._call(self.stub.RetryTask(request, timeout=self.config.timeout))
        return list(reply.retried_task_ids)

    async def copy_task_tree(
        self,
        task_id: str,
        *,
        only_unfinished: bool = False,
        execute: bool = False,
        request_id: str = "",
        basic: bool = False,
    ) -> dict[str, Task]:
        """Copy a subtree as a new tree; returns the copies by original task id."""
        request = task_service_pb2.CopyTaskTreeRequest(
            id=task_id, only_unfinished=only_unfinished, execute=execute, request_id=request_id
        )
        reply = await self._call(self.stub.CopyTaskTree(request, timeout=self.config.timeout))
        copies = {task.id: Task.from_proto(task) for task in reply.tasks}
        return {original: copies[copy] for original, copy in reply.task_ids.items()}

    async def update_task(
        self, task_id: str, *, etag: str = "", request_id: str = "", **fields: Any
    ) -> Task:
        """Change fields of a pending task (name, priority, dependencies, inputs, params,
        max_attempts, retry_backoff, timeout). With `etag`, fails with `AbortedError` if
        the task changed since it was read."""
        message = task_message(
            name=str(fields.get("name", "")),
            id=task_id,
            **{key: value for key, value in fields.items() if key != "name"},
        )
        message.etag = etag
        request = task_service_pb2.UpdateTaskRequest(task=message, request_id=request_id)
        request.update_mask.paths.extend(sorted(fields))
        return Task.from_proto(
            await self._call(self.stub.UpdateTask(request, timeout=self.config.timeout))
        )

    async def delete_task(self, task_id: str, *, etag: str = "", request_id: str = "") -> list[str]:
        """Delete a pending subtree that nothing else depends on; returns the deleted ids."""
        request = task_service_pb2.DeleteTaskRequest(id=task_id, etag=etag, request_id=request_id)
        reply = await self._call(self.stub.DeleteTask(request, timeout=self.config.timeout))
        return list(reply.deleted_task_ids)

    async def explain_task(self, task_id: str) -> Explanation:
        """Why the task is not running (yet): dependencies, limits, queue position."""
        request = task_service_pb2.ExplainTaskRequest(id=task_id)
        reply = await self._call(self.stub.ExplainTask(request, timeout=self.config.timeout))
        return Explanation(
            task=Task.from_proto(reply.task),
            reasons=list(reply.reasons),
            summary=reply.summary,
            waiting_dependencies=[
                WaitingDependency(
                    d.id,
                    d.name,
                    wire.status_from_proto(d.status),
                    d.required,
                    d.execution_requested,
                )
                for d in reply.waiting_dependencies
            ],
            queue_position=reply.queue_position,
            retry_time=reply.retry_time.ToDatetime(tzinfo=UTC)
            if reply.HasField("retry_time")
            else None,
            running=reply.running,
            concurrency_limit=reply.concurrency_limit,
        )

    async def list_executors(self) -> list[Executor]:
        request = task_service_pb2.ListExecutorsRequest()
        reply = await self._call(self.stub.ListExecutors(request, timeout=self.config.timeout))
        return [Executor.from_proto(e) for e in reply.executors]

    async def watch(
        self,
        *,
        root_id: str = "",
        task_id: str = "",
        user_id: str = "",
        after_sequence: int = 0,
        include_snapshot: bool = False,
        heartbeat_interval: float | None = None,
        max_backoff: float = 5.0,
        max_reconnects: int | None = None,
        on_reconnect: Callable[[int, TaskgroveError], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> AsyncGenerator[TaskEvent | Snapshot, None]:
        """Events of a tree, a task or an owner, in order, each exactly once.

        Replays history after `after_sequence`, then follows live. On UNAVAILABLE or
        RESOURCE_EXHAUSTED (server restart, watcher too slow) it reconnects with jittered
        exponential backoff and resumes after the last sequence seen. With
        `include_snapshot`, the first item is a `Snapshot` of the current tasks.

        `on_reconnect(attempt, error)` is called before each reconnection (`attempt`
        1, 2, ... counts the failures in a row), and `on_resume()` once the stream is
        established again after them (its first message, a heartbeat or events, came).
        Neither changes what is yielded.
        """
        failures = 0

        def reconnecting(error: grpc.aio.AioRpcError) -> None:
            nonlocal failures
            failures += 1
            if on_reconnect is not None:
                on_reconnect(failures, from_rpc_error(error))

        request = watch_request(
            root_id=root_id,
            task_id=task_id,
            user_id=user_id,
            after_sequence=after_sequence,
            include_snapshot=include_snapshot,
            heartbeat_interval=heartbeat_interval,
        )
        responses = watch_responses(
            self.stub,
            request,
            max_backoff=max_backoff,
            max_reconnects=max_reconnects,
            on_reconnect=reconnecting,
        )
        # Closing the stream here (the consumer left early) cancels the call on the server.
        async with contextlib.aclosing(responses):
            need_snapshot = include_snapshot
            snapshot: list[Task] = []
            try:
                async for response in responses:
                    if failures:
                        failures = 0
                        if on_resume is not None:
                            on_resume()
                    if need_snapshot:
                        # Its messages come only once it is whole, the last marked complete.
                        snapshot.extend(Task.from_proto(t) for t in response.snapshot)
                        if response.snapshot_complete:
                            need_snapshot = False
                            yield Snapshot(snapshot, response.sequence)
                        continue
                    for message in response.events:
                        yield TaskEvent.from_proto(message)
            except grpc.aio.AioRpcError as error:
                raise from_rpc_error(error) from None

    async def task_logs(
        self, task_id: str, *, attempt: int = 0, follow: bool = False
    ) -> AsyncGenerator[LogLine, None]:
        """The lines an executor logged for a task: of `attempt` (0: the latest). With
        `follow`, new lines as they come, until the attempt ends (with `attempt` 0: the
        task, following each retry)."""
        request = task_service_pb2.StreamTaskLogsRequest(
            task_id=task_id, attempt=attempt, follow=follow
        )
        call = self.stub.StreamTaskLogs(request)
        try:
            seen: set[int] = set()
            unreported = 0  # the current attempt's cut lines, told with its first line
            async for response in call:
                if response.attempt not in seen:
                    seen.add(response.attempt)
                    unreported = response.cut_lines
                for line in response.lines:
                    yield LogLine(
                        attempt=response.attempt,
                        sequence=line.sequence,
                        time=line.time.ToDatetime(tzinfo=UTC) if line.HasField("time") else None,
                        text=line.text,
                        cut_before=unreported,
                    )
                    unreported = 0
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # the consumer left early: end the stream on the server too

    # ------------------------------------------------------------------ helpers

    async def wait(self, task_id: str) -> Task:
        """Wait until the task (for a group: its whole subtree) has finished. Bound it with
        `asyncio.timeout(...)`."""
        delay = 0.01
        while True:
            task = await self.get_task(task_id)
            if task.is_finished:
                return task
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
