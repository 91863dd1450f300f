"""Protobuf <-> the use-cases' records: tasks out, specs in (with the checks only the
wire form allows: JSON values, sizes, durations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from taskgrove.domain import reasons, wire
from taskgrove.v1 import task_pb2

from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.service import limits
from taskgrove_server.service.specs import TaskSpec
from taskgrove_server.storage.records import TaskRow


def _timestamp(micros: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def task_to_proto(row: TaskRow) -> task_pb2.Task:
    """TASK_VIEW_FULL."""
    task = task_pb2.Task(
        id=row.id,
        parent_id=row.parent_id or "",
        root_id=row.root_id,
        user_id=row.user_id,
        name=row.name,
        executor=row.executor or "",
        priority=row.priority,
        dependencies=[
            task_pb2.Dependency(id=dep["id"], required=dep.get("required", True))
            for dep in row.dependencies
        ],
        inputs=wire.to_struct(row.inputs),
        params=wire.to_struct(row.params),
        status=wire.status_to_proto(row.status),
        progress=row.progress,
        progress_message=row.progress_message,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        original_task_id=row.original_task_id or "",
        has_children=row.has_children,
        etag=row.etag,
        execution_requested=row.execution_requested,
    )
    if row.result is not None:
        task.result.CopyFrom(wire.to_value(row.result))
    if row.error:
        task.error.CopyFrom(task_error(row.error))
    task.retry_backoff.FromMilliseconds(row.retry_backoff_ms)
    if row.timeout_ms is not None:
        task.timeout.FromMilliseconds(row.timeout_ms)
    task.create_time.CopyFrom(_timestamp(row.created_us))
    task.update_time.CopyFrom(_timestamp(row.updated_us))
    if row.started_us is not None:
        task.start_time.CopyFrom(_timestamp(row.started_us))
    if row.ended_us is not None:
        task.end_time.CopyFrom(_timestamp(row.ended_us))
    return task


def basic_task_to_proto(row: TaskRow) -> task_pb2.Task:
    """TASK_VIEW_BASIC: who the task is and where it stands, nothing bulky."""
    return task_pb2.Task(
        id=row.id,
        parent_id=row.parent_id or "",
        root_id=row.root_id,
        user_id=row.user_id,
        name=row.name,
        executor=row.executor or "",
        priority=row.priority,
        status=wire.status_to_proto(row.status),
    )


def task_error(error: dict[str, object]) -> task_pb2.TaskError:
    details = error.get("details")
    return task_pb2.TaskError(
        reason=str(error.get("reason", "")),
        message=str(error.get("message", "")),
        details=wire.to_struct(details if isinstance(details, dict) else {}),
    )


# ---------------------------------------------------------------------- requests in


class Problems:
    """Violations found while reading a request's tasks."""

    def __init__(self) -> None:
        self.found: list[FieldViolation] = []
        self.total = 0
        """Every violation, also those beyond the first 1000 kept."""

    def add(self, field: str, reason: str, description: str) -> None:
        self.total += 1
        if len(self.found) < 1000:
            self.found.append(FieldViolation(field, description, reason))

    def raise_any(self) -> None:
        if self.found:
            raise invalid(self.found, total=self.total)


def _json(message: struct_pb2.Struct, field: str, problems: Problems) -> dict[str, object]:
    size = message.ByteSize()
    if size > limits.MAX_JSON_BYTES:
        problems.add(
            field, reasons.VALUE_TOO_LARGE, f"{size} bytes; at most {limits.MAX_JSON_BYTES}"
        )
        return {}
    try:
        return wire.from_struct(message)
    except wire.InvalidJsonValue as error:
        problems.add(error.field(field), reasons.INVALID_JSON_VALUE, error.message)
        return {}


def duration_ms(message: duration_pb2.Duration, field: str, reason: str, problems: Problems) -> int:
    """A Duration in milliseconds; out of range (beyond `limits.MAX_DURATION_MS`, or not
    a valid Duration) is a violation."""
    seconds, nanos = message.seconds, message.nanos
    valid = abs(nanos) < 1_000_000_000 and (
        seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0)
    )
    # Floored: a negative duration stays negative (-1 ns is -1 ms, not 0).
    millis = (seconds * 1_000_000_000 + nanos) // 1_000_000
    if not valid or abs(millis) > limits.MAX_DURATION_MS:
        problems.add(field, reason, "not a duration of at most 366 days")
        return 0
    return millis


def spec_from_proto(task: task_pb2.Task, ref: str, field: str, problems: Problems) -> TaskSpec:
    return TaskSpec(
        ref=ref,
        field=field,
        name=task.name,
        parent_id=task.parent_id or None,
        user_id=task.user_id,
        executor=task.executor,
        priority=task.priority if task.HasField("priority") else None,
        dependencies=[
            (dep.id, dep.required if dep.HasField("required") else True)
            for dep in task.dependencies
        ],
        inputs=_json(task.inputs, f"{field}.inputs", problems),
        params=_json(task.params, f"{field}.params", problems),
        max_attempts=task.max_attempts,
        retry_backoff_ms=duration_ms(
            task.retry_backoff, f"{field}.retry_backoff", reasons.INVALID_RETRY_POLICY, problems
        )
        if task.HasField("retry_backoff")
        else None,
        timeout_ms=duration_ms(task.timeout, f"{field}.timeout", reasons.INVALID_TIMEOUT, problems)
        if task.HasField("timeout")
        else None,
    )


def one_spec(task: task_pb2.Task, ref: str, field: str) -> TaskSpec:
    problems = Problems()
    spec = spec_from_proto(task, ref, field, problems)
    problems.raise_any()
    return spec


def tree_specs(tasks: Sequence[task_pb2.Task], new_ref: Callable[[], str]) -> list[TaskSpec]:
    problems = Problems()
    specs = []
    for index, task in enumerate(tasks):
        # A task without a local id gets a fresh ref that nothing can refer to.
        spec = spec_from_proto(task, task.id or new_ref(), f"tasks[{index}]", problems)
        spec.label = None if task.id else f"tasks[{index}]"
        specs.append(spec)
    problems.raise_any()
    return specs
