"""Stored rows <-> protobuf messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from taskgrove import _json, statuses
from taskgrove.v1 import task_pb2, task_service_pb2

from taskgrove_server.validation import TaskSpec


def _timestamp(micros: int | None) -> timestamp_pb2.Timestamp | None:
    if micros is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def _millis(duration: duration_pb2.Duration) -> int:
    return int(duration.ToMilliseconds())


def task_to_proto(row: Mapping[Any, Any], progress: float | None = None) -> task_pb2.Task:
    """`progress` overrides the stored value (groups: computed over their subtree)."""
    task = task_pb2.Task(
        id=row["id"],
        parent_id=row["parent_id"] or "",
        root_id=row["root_id"],
        user_id=row["user_id"],
        name=row["name"],
        executor=row["executor"] or "",
        priority=row["priority"],
        dependencies=[
            task_pb2.Dependency(id=dep["id"], required=dep.get("required", True))
            for dep in row["dependencies"]
        ],
        inputs=_json.to_struct(row["inputs"]),
        params=_json.to_struct(row["params"]),
        status=statuses.to_proto(row["status"]),
        progress=row["progress"] if progress is None else progress,
        progress_message=row["progress_message"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        original_task_id=row["original_task_id"] or "",
        has_children=row["has_children"],
        etag=str(row["version"]),
        execution_requested=row["execution_requested"],
    )
    if row["result"] is not None:
        task.result.CopyFrom(_json.to_value(row["result"]))
    if row["error"]:
        error = row["error"]
        task.error.CopyFrom(
            task_pb2.TaskError(
                reason=error.get("reason", ""),
                message=error.get("message", ""),
                details=_json.to_struct(error.get("details") or {}),
            )
        )
    task.retry_backoff.FromMilliseconds(row["retry_backoff_ms"])
    if row["timeout_ms"] is not None:
        task.timeout.FromMilliseconds(row["timeout_ms"])
    for name, column in (
        ("create_time", "created_us"),
        ("start_time", "started_us"),
        ("update_time", "updated_us"),
        ("end_time", "ended_us"),
    ):
        stamp = _timestamp(row[column])
        if stamp is not None:
            getattr(task, name).CopyFrom(stamp)
    return task


def basic_task_to_proto(row: Mapping[Any, Any]) -> task_pb2.Task:
    """TASK_VIEW_BASIC: who the task is and where it stands, nothing bulky."""
    return task_pb2.Task(
        id=row["id"],
        parent_id=row["parent_id"] or "",
        root_id=row["root_id"],
        user_id=row["user_id"],
        name=row["name"],
        executor=row["executor"] or "",
        priority=row["priority"],
        status=statuses.to_proto(row["status"]),
    )


def view_of(view: int) -> Callable[[Mapping[Any, Any]], task_pb2.Task]:
    return basic_task_to_proto if view == task_service_pb2.TASK_VIEW_BASIC else task_to_proto


def subtree_progress(rows: Sequence[Mapping[Any, Any]]) -> dict[str, float]:
    """Progress of every group among `rows` (a whole subtree, parents first): the mean over
    its executable descendants, `completed` counting as 1.0 (DESIGN section 3)."""
    sums: dict[str, list[float]] = {row["id"]: [0.0, 0.0] for row in rows}
    for row in reversed(rows):  # children before parents
        total = sums[row["id"]]
        if row["executor"] is not None:
            done = row["status"] == statuses.COMPLETED
            total[0] += 1.0 if done else row["progress"]
            total[1] += 1
        parent = sums.get(row["parent_id"]) if row["parent_id"] else None
        if parent is not None:
            parent[0] += total[0]
            parent[1] += total[1]
    result = {}
    for row in rows:
        if row["executor"] is None:
            value, count = sums[row["id"]]
            if count:
                result[row["id"]] = value / count
            else:  # nothing to run: done once executed
                result[row["id"]] = 1.0 if row["status"] == statuses.COMPLETED else 0.0
    return result


def spec_from_proto(task: task_pb2.Task, ref: str, field: str) -> TaskSpec:
    return TaskSpec(
        ref=ref,
        field=field,
        name=task.name,
        parent=task.parent_id or None,
        user_id=task.user_id,
        executor=task.executor,
        priority=task.priority if task.HasField("priority") else None,
        dependencies=[
            (dep.id, dep.required if dep.HasField("required") else True)
            for dep in task.dependencies
        ],
        inputs=_json.from_struct(task.inputs),
        params=_json.from_struct(task.params),
        max_attempts=task.max_attempts,
        retry_backoff_ms=_millis(task.retry_backoff) if task.HasField("retry_backoff") else None,
        timeout_ms=_millis(task.timeout) if task.HasField("timeout") else None,
    )
