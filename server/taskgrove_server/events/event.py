"""One state change of one task, as stored and as streamed, and what a watcher filters on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# Event types: the proto's TaskEventType names, lower case.
CREATED: Final = "created"
STATUS_CHANGED: Final = "status_changed"
PROGRESS: Final = "progress"
DELETED: Final = "deleted"
TYPES: Final = (CREATED, STATUS_CHANGED, PROGRESS, DELETED)


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
    """Assigned inside the transaction that stores the event (the counter row: commit
    order); 0 until then."""
    encoded: bytes | None = field(default=None, repr=False)
    """The API layer's cache of this event's wire form (shared by every watcher)."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a watcher wants: one tree, one task, or one owner (empty: any)."""

    root_id: str = ""
    task_id: str = ""
    user_id: str = ""

    def matches(self, event: Event) -> bool:
        return (
            (not self.root_id or event.root_id == self.root_id)
            and (not self.task_id or event.task_id == self.task_id)
            and (not self.user_id or event.user_id == self.user_id)
        )
