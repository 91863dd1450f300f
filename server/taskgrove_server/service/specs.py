"""What the use-cases take and return: plain records, no protobuf and no SQL types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskgrove_server.storage.records import TaskRow


@dataclass(slots=True)
class TaskSpec:
    """A task as requested; ids may be client-local (CreateTaskTree)."""

    ref: str
    """Client-local id (CreateTaskTree), a stored id (UpdateTask) or a placeholder."""
    field: str
    """Field path of this task in the request, e.g. `tasks[3]`."""
    name: str
    parent_id: str | None
    user_id: str
    executor: str
    """Empty: the executor named by `name` when one is registered, else a group."""
    priority: int | None
    dependencies: list[tuple[str, bool]]
    """(id, required), in the order given."""
    inputs: dict[str, Any]
    params: dict[str, Any]
    max_attempts: int
    """0: the default (1)."""
    retry_backoff_ms: int | None
    """None: the default (1 s)."""
    timeout_ms: int | None
    """None: no timeout."""
    original_task_id: str | None = None
    """Set on copies (CopyTaskTree)."""
    label: str | None = None
    """How messages name a task the request gave no id (its `ref` is then internal)."""


def spec_from_stored(row: TaskRow, field: str, parent_id: str | None) -> TaskSpec:
    """A stored task as a spec again (UpdateTask re-validates it, CopyTaskTree copies it)."""
    return TaskSpec(
        ref=row.id,
        field=field,
        name=row.name,
        parent_id=parent_id,
        user_id=row.user_id,
        executor=row.executor or "",
        priority=row.priority,
        dependencies=[(d["id"], bool(d.get("required", True))) for d in row.dependencies],
        inputs=dict(row.inputs),
        params=dict(row.params),
        max_attempts=row.max_attempts,
        retry_backoff_ms=row.retry_backoff_ms,
        timeout_ms=row.timeout_ms,
    )


@dataclass(frozen=True, slots=True)
class Created:
    """What a creation stored."""

    rows: list[TaskRow]
    """The stored rows, parents first."""
    ids: dict[str, str]
    """Request ref -> server id."""
    refs: list[str]
    """The request's refs, in request order."""

    @property
    def top(self) -> TaskRow:
        return self.rows[0]

    def in_request_order(self) -> list[TaskRow]:
        by_id = {row.id: row for row in self.rows}
        return [by_id[self.ids[ref]] for ref in self.refs]


BeforeWrite = Callable[[Created], None]
"""Sees a creation once it is validated, before anything is stored; may raise to refuse."""
