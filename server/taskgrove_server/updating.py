"""UpdateTask: turn a field mask into validated `TaskChanges`."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import RowMapping
from taskgrove.v1 import task_pb2

from taskgrove_server.api.convert import spec_from_proto
from taskgrove_server.creation import DEFAULT_RETRY_BACKOFF_MS, TaskCreator
from taskgrove_server.engine.changes import UPDATABLE, TaskChanges
from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.validation import (
    DEFAULT_PRIORITY,
    resolve_executor,
    spec_from_stored,
    validate_new_tasks,
)


async def validated_changes(
    row: RowMapping,
    task: task_pb2.Task,
    paths: list[str],
    creator: TaskCreator,
    registry: ExecutorRegistry,
) -> TaskChanges:
    """Check the mask and the task as it would be after the update (same rules as
    creation, cycles included); raises INVALID_ARGUMENT."""
    if not paths:
        raise invalid([FieldViolation("update_mask", "name the fields to update", "EMPTY_MASK")])
    bad = [path for path in paths if path not in UPDATABLE]
    if bad:
        raise invalid(
            [
                FieldViolation(
                    f"update_mask.paths[{paths.index(path)}]",
                    f"{path!r} cannot be updated; updatable: {', '.join(UPDATABLE)}",
                    "FIELD_NOT_UPDATABLE",
                )
                for path in bad
            ]
        )
    stored = spec_from_stored(row, "task", row["parent_id"])
    wanted = spec_from_proto(task, ref=row["id"], field="task")
    merged = replace(
        stored, **{_SPEC_FIELDS[path]: getattr(wanted, _SPEC_FIELDS[path]) for path in paths}
    )
    if merged.max_attempts == 0:
        merged.max_attempts = 1
    if resolve_executor(merged, registry) != row["executor"]:
        raise invalid(
            [
                FieldViolation(
                    "task.name",
                    "a rename may not change which executor runs the task",
                    "EXECUTOR_NOT_UPDATABLE",
                )
            ]
        )
    existing = await creator.load_referenced([merged])
    validate_new_tasks([merged], existing, registry)
    changes = TaskChanges()
    if "name" in paths:
        changes.name = merged.name
    if "priority" in paths:
        changes.priority = DEFAULT_PRIORITY if merged.priority is None else merged.priority
    if "dependencies" in paths:
        changes.dependencies = dict(merged.dependencies)
    if "inputs" in paths:
        changes.inputs = merged.inputs
    if "params" in paths:
        changes.params = merged.params
    if "max_attempts" in paths:
        changes.max_attempts = merged.max_attempts
    if "retry_backoff" in paths:
        changes.retry_backoff_ms = (
            DEFAULT_RETRY_BACKOFF_MS if merged.retry_backoff_ms is None else merged.retry_backoff_ms
        )
    if "timeout" in paths:
        changes.timeout_ms = merged.timeout_ms
        changes.clear_timeout = merged.timeout_ms is None
    return changes


# Mask path -> TaskSpec attribute.
_SPEC_FIELDS = {path: path for path in UPDATABLE} | {
    "retry_backoff": "retry_backoff_ms",
    "timeout": "timeout_ms",
}
