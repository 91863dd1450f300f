"""SDK-side task model: plain Python values instead of protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from taskgrove.domain import statuses, wire
from taskgrove.v1 import event_pb2, task_pb2


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task failed or was cancelled; `reason` is one of `taskgrove.reasons` or an
    executor's own."""

    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: task_pb2.TaskError) -> TaskError:
        return cls(message.reason, message.message, wire.from_struct(message.details))


@dataclass(frozen=True, slots=True)
class ExecutorWorker:
    """A connected worker serving an executor."""

    worker_id: str
    name: str
    labels: dict[str, str]
    slots: int
    free_slots: int


@dataclass(frozen=True, slots=True)
class Executor:
    id: str
    description: str
    input_schema: dict[str, Any]
    remote: bool = False
    """Its tasks run in workers."""
    workers: tuple[ExecutorWorker, ...] = ()
    """The connected workers serving it (remote executors)."""
    free_slots: int = 0
    disabled: bool = False
    """It exists on the server but is switched off (its tasks are refused)."""
    disabled_reason: str = ""
    """How the operator enables it."""

    @classmethod
    def from_proto(cls, message: task_pb2.Executor) -> Executor:
        return cls(
            message.id,
            message.description,
            wire.from_struct(message.input_schema),
            message.remote,
            tuple(
                ExecutorWorker(w.worker_id, w.name, dict(w.labels), w.slots, w.free_slots)
                for w in message.workers
            ),
            message.free_slots,
            message.disabled,
            message.disabled_reason,
        )


def _time(message: task_pb2.Task | event_pb2.TaskEvent, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the server last reported it. `status` is one of the strings in
    `taskgrove.statuses`; `parent_id` is None for a root; `executor` None for a group."""

    id: str
    name: str
    user_id: str
    status: str
    parent_id: str | None = None
    root_id: str = ""
    executor: str | None = None
    priority: int = 2
    dependencies: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: TaskError | None = None
    progress: float = 0.0
    progress_message: str = ""
    attempt: int = 0
    max_attempts: int = 1
    retry_backoff: timedelta = timedelta(seconds=1)
    timeout: timedelta | None = None
    original_task_id: str | None = None
    has_children: bool = False
    execution_requested: bool = False
    etag: str = ""
    create_time: datetime | None = None
    start_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def is_group(self) -> bool:
        return self.executor is None

    @property
    def is_finished(self) -> bool:
        return self.status in statuses.TERMINAL

    @classmethod
    def from_proto(cls, message: task_pb2.Task) -> Task:
        return cls(
            id=message.id,
            name=message.name,
            user_id=message.user_id,
            status=wire.status_from_proto(message.status),
            parent_id=message.parent_id or None,
            root_id=message.root_id,
            executor=message.executor or None,
            priority=message.priority,
            dependencies=[{"id": d.id, "required": d.required} for d in message.dependencies],
            inputs=wire.from_struct(message.inputs),
            params=wire.from_struct(message.params),
            result=wire.from_value(message.result) if message.HasField("result") else None,
            error=TaskError.from_proto(message.error) if message.HasField("error") else None,
            progress=message.progress,
            progress_message=message.progress_message,
            attempt=message.attempt,
            max_attempts=message.max_attempts,
            retry_backoff=message.retry_backoff.ToTimedelta(),
            timeout=message.timeout.ToTimedelta() if message.HasField("timeout") else None,
            original_task_id=message.original_task_id or None,
            has_children=message.has_children,
            execution_requested=message.execution_requested,
            etag=message.etag,
            create_time=_time(message, "create_time"),
            start_time=_time(message, "start_time"),
            update_time=_time(message, "update_time"),
            end_time=_time(message, "end_time"),
        )


_EVENT_TYPES = {
    event_pb2.TASK_EVENT_TYPE_CREATED: "created",
    event_pb2.TASK_EVENT_TYPE_STATUS_CHANGED: "status_changed",
    event_pb2.TASK_EVENT_TYPE_PROGRESS: "progress",
    event_pb2.TASK_EVENT_TYPE_DELETED: "deleted",
}


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One state change. `type` is "created", "status_changed", "progress" or "deleted"
    (the proto's `TaskEventType` names)."""

    sequence: int
    task_id: str
    root_id: str
    user_id: str
    parent_id: str | None
    name: str
    type: str
    status: str
    previous_status: str | None
    progress: float
    progress_message: str
    error: TaskError | None
    attempt: int
    is_group: bool
    time: datetime | None

    @classmethod
    def from_proto(cls, message: event_pb2.TaskEvent) -> TaskEvent:
        previous = message.previous_status
        return cls(
            sequence=message.sequence,
            task_id=message.task_id,
            root_id=message.root_id,
            user_id=message.user_id,
            parent_id=message.parent_id or None,
            name=message.name,
            type=_EVENT_TYPES.get(message.type, "unknown"),
            status=wire.status_from_proto(message.status),
            previous_status=wire.status_from_proto(previous) if previous else None,
            progress=message.progress,
            progress_message=message.progress_message,
            error=TaskError.from_proto(message.error) if message.HasField("error") else None,
            attempt=message.attempt,
            is_group=message.is_group,
            time=_time(message, "time"),
        )


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line an executor logged during one attempt of a task."""

    attempt: int
    sequence: int
    """1, 2, 3... within the attempt."""
    time: datetime | None
    """When the server received it."""
    text: str
    cut_before: int = 0
    """Lines of the attempt cut just before this one (the server keeps an attempt's last
    1,000 lines and 1 MiB); set on an attempt's first line."""


@dataclass(frozen=True, slots=True)
class WaitingDependency:
    id: str
    name: str
    status: str
    required: bool
    execution_requested: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a task is where it is (`ExplainTask`). `reasons` are stable codes such as
    NOT_EXECUTING, WAITING_FOR_DEPENDENCIES, RETRY_BACKOFF, CONCURRENCY_LIMIT, QUEUED."""

    task: Task
    reasons: list[str]
    summary: str
    waiting_dependencies: list[WaitingDependency]
    queue_position: int
    retry_time: datetime | None
    running: int
    concurrency_limit: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The tasks a watch covers as of `sequence`; the events that follow come after it."""

    tasks: list[Task]
    sequence: int
