"""UpdateTask: turn a field mask into validated `TaskChanges`."""

from __future__ import annotations

from dataclasses import replace

from taskgrove.domain import reasons

from taskgrove_server.engine.changes import UPDATABLE, TaskChanges
from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.service.creation import DEFAULT_RETRY_BACKOFF_MS, TaskCreator
from taskgrove_server.service.specs import TaskSpec, spec_from_stored
from taskgrove_server.service.validation import (
    DEFAULT_PRIORITY,
    resolve_executor,
    validate_new_tasks,
)
from taskgrove_server.storage.records import TaskRow

# Mask path -> TaskSpec attribute.
_SPEC_FIELDS = {path: path for path in UPDATABLE} | {
    "retry_backoff": "retry_backoff_ms",
    "timeout": "timeout_ms",
}


async def validated_changes(
    row: TaskRow,
    wanted: TaskSpec,
    paths: list[str],
    creator: TaskCreator,
    registry: ExecutorRegistry,
) -> TaskChanges:
    """Check the mask and the task as it would be after the update (same rules as
    creation, cycles included); raises INVALID_ARGUMENT."""
    if not paths:
        raise invalid(
            [FieldViolation("update_mask", "name the fields to update", reasons.EMPTY_MASK)]
        )
    bad = [path for path in paths if path not in UPDATABLE]
    if bad:
        raise invalid(
            [
                FieldViolation(
                    f"update_mask.paths[{paths.index(path)}]",
                    f"{path[:100]!r} cannot be updated; updatable: {', '.join(UPDATABLE)}",
                    reasons.FIELD_NOT_UPDATABLE,
                )
                for path in bad[:20]
            ],
            total=len(bad),
        )
    stored = spec_from_stored(row, "task", row.parent_id)
    merged = replace(
        stored, **{_SPEC_FIELDS[path]: getattr(wanted, _SPEC_FIELDS[path]) for path in paths}
    )
    if merged.max_attempts == 0:
        merged.max_attempts = 1
    if resolve_executor(merged, registry) != row.executor:
        raise invalid(
            [
                FieldViolation(
                    "task.name",
                    "a rename may not change which executor runs the task",
                    reasons.EXECUTOR_NOT_UPDATABLE,
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
