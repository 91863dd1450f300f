"""The rows storage reads and writes, as typed records (no SQL types leave `storage/`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True, eq=False)
class TaskRow:
    """One task as stored. A slotted object takes about a fifth of the memory of a dict per
    row, which counts for a 100,000-task CreateTaskTree."""

    id: str
    parent_id: str | None
    root_id: str
    user_id: str
    name: str
    executor: str | None
    """None: a group."""
    priority: int
    dependencies: list[dict[str, Any]]
    """[{"id": ..., "required": bool}], in the order given."""
    inputs: dict[str, Any]
    params: dict[str, Any]
    status: str
    execution_requested: bool
    result: Any
    error: dict[str, Any] | None
    """{"reason", "message", "details"}."""
    progress: float
    progress_message: str
    attempt: int
    max_attempts: int
    retry_backoff_ms: int
    """The proto's `retry_backoff`, in milliseconds."""
    timeout_ms: int | None
    """The proto's `timeout`, in milliseconds (None: no limit)."""
    original_task_id: str | None
    has_children: bool
    created_us: int
    started_us: int | None
    updated_us: int
    ended_us: int | None
    version: int
    """+1 on every stored change; the proto's `etag` is its decimal string."""
    seq: int = 0
    """Insertion order (the ListTasks page key); assigned by the database."""

    @property
    def is_group(self) -> bool:
        return self.executor is None

    @property
    def etag(self) -> str:
        return str(self.version)


@dataclass(slots=True, eq=False)
class TaskLinks:
    """What creating tasks reads of a stored task they name (their parent, a dependency):
    where it is, whose, and what it waits for; not its inputs, state or results (decoding
    their JSON for nothing was a fifth of these reads' time in a profile of creates)."""

    id: str
    executor: str | None
    """None: a group."""
    root_id: str
    user_id: str
    dependencies: list[dict[str, Any]]
    """As `TaskRow.dependencies`."""

    @property
    def is_group(self) -> bool:
        return self.executor is None

    @classmethod
    def of(cls, row: TaskRow) -> TaskLinks:
        return cls(row.id, row.executor, row.root_id, row.user_id, row.dependencies)


TASK_COLUMNS = tuple(f.name for f in fields(TaskRow))
"""Column names, in the order of `TaskRow`'s fields (`seq` last)."""
INSERTED_COLUMNS = TASK_COLUMNS[:-1]
"""What an insert writes (`seq` is the database's)."""


@dataclass(slots=True)
class StateChange:
    """A guarded update of a task's mutable state: it applies only while the stored status
    is still `expected_status`, so a finished task can never flip."""

    task_id: str
    expected_status: str
    status: str
    execution_requested: bool
    attempt: int
    result: Any
    error: dict[str, Any] | None
    progress: float
    progress_message: str
    started_us: int | None
    ended_us: int | None
    updated_us: int


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first answer to an idempotent request."""

    method: str
    request_hash: str
    response: bytes


@dataclass(frozen=True, slots=True)
class LogLineRow:
    """A line an attempt logged (see storage/schema.py `task_logs`)."""

    sequence: int
    time_us: int
    text: str


@dataclass(frozen=True, slots=True)
class RemoteExecutorRow:
    """An executor a worker registered (see storage/schema.py `remote_executors`)."""

    id: str
    description: str
    input_schema: dict[str, Any]
