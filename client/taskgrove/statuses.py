"""Task statuses: the strings the SDK shows and their proto enum values."""

from __future__ import annotations

from typing import Final

from taskgrove.v1 import task_pb2

PENDING: Final = "pending"
IN_PROGRESS: Final = "in_progress"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

ALL: Final = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED})

_TO_PROTO: Final[dict[str, task_pb2.TaskStatus.ValueType]] = {
    PENDING: task_pb2.TASK_STATUS_PENDING,
    IN_PROGRESS: task_pb2.TASK_STATUS_IN_PROGRESS,
    COMPLETED: task_pb2.TASK_STATUS_COMPLETED,
    FAILED: task_pb2.TASK_STATUS_FAILED,
    CANCELLED: task_pb2.TASK_STATUS_CANCELLED,
}
_FROM_PROTO: Final = {v: k for k, v in _TO_PROTO.items()}


def to_proto(status: str) -> task_pb2.TaskStatus.ValueType:
    return _TO_PROTO[status]


def from_proto(value: task_pb2.TaskStatus.ValueType) -> str:
    """The SDK string of a proto status; raises KeyError for UNSPECIFIED."""
    return _FROM_PROTO[value]
