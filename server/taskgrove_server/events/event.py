"""One state change of one task, as stored and as streamed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskgrove import _json, statuses
from taskgrove.v1 import event_pb2, task_pb2

CREATED = "created"
STATUS_CHANGED = "status"
PROGRESS = "progress"
DELETED = "deleted"

_TYPES = {
    CREATED: event_pb2.TASK_EVENT_TYPE_CREATED,
    STATUS_CHANGED: event_pb2.TASK_EVENT_TYPE_STATUS_CHANGED,
    PROGRESS: event_pb2.TASK_EVENT_TYPE_PROGRESS,
    DELETED: event_pb2.TASK_EVENT_TYPE_DELETED,
}


@dataclass(slots=True, eq=False)
class Event:
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
    error: dict[str, Any] | None
    attempt: int
    is_group: bool
    time_us: int
    sequence: int = 0
    """Assigned by the writer when the event's transaction commits."""
    _proto: event_pb2.TaskEvent | None = field(default=None, repr=False)
    wire: bytes | None = field(default=None, repr=False)
    """This event encoded as a WatchEventsResponse field (see events/wire.py)."""

    def row(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "task_id": self.task_id,
            "root_id": self.root_id,
            "user_id": self.user_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "previous_status": self.previous_status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "error": self.error,
            "attempt": self.attempt,
            "is_group": self.is_group,
            "time_us": self.time_us,
        }

    @classmethod
    def created(cls, task: Any) -> Event:
        """The `created` event of a task row about to be stored."""
        return cls(
            task_id=task["id"],
            root_id=task["root_id"],
            user_id=task["user_id"],
            parent_id=task["parent_id"],
            name=task["name"],
            type=CREATED,
            status=task["status"],
            previous_status=None,
            progress=task["progress"],
            progress_message=task["progress_message"],
            error=None,
            attempt=task["attempt"],
            is_group=task["executor"] is None,
            time_us=task["created_us"],
        )

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            task_id=row["task_id"],
            root_id=row["root_id"],
            user_id=row["user_id"],
            parent_id=row["parent_id"],
            name=row["name"],
            type=row["type"],
            status=row["status"],
            previous_status=row["previous_status"],
            progress=row["progress"],
            progress_message=row["progress_message"],
            error=row["error"],
            attempt=row["attempt"],
            is_group=row["is_group"],
            time_us=row["time_us"],
            sequence=row["sequence"],
        )

    def proto(self) -> event_pb2.TaskEvent:
        """Built once and shared by every watcher."""
        if self._proto is None:
            message = event_pb2.TaskEvent(
                sequence=self.sequence,
                task_id=self.task_id,
                root_id=self.root_id,
                user_id=self.user_id,
                parent_id=self.parent_id or "",
                name=self.name,
                type=_TYPES[self.type],
                status=statuses.to_proto(self.status),
                previous_status=statuses.to_proto(self.previous_status)
                if self.previous_status
                else task_pb2.TASK_STATUS_UNSPECIFIED,
                progress=self.progress,
                progress_message=self.progress_message,
                attempt=self.attempt,
                is_group=self.is_group,
            )
            message.time.FromMicroseconds(self.time_us)
            if self.error:
                message.error.CopyFrom(
                    task_pb2.TaskError(
                        reason=self.error.get("reason", ""),
                        message=self.error.get("message", ""),
                        details=_json.to_struct(self.error.get("details") or {}),
                    )
                )
            self._proto = message
        return self._proto
