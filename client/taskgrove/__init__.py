"""taskgrove SDK: create, run and inspect task trees on a taskgrove server.

from taskgrove import TaskManager, TaskTreeNode, create_session
"""

from __future__ import annotations

from taskgrove import statuses
from taskgrove.client import AsyncClient, task_message
from taskgrove.errors import (
    AbortedError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    TaskgroveError,
    UnavailableError,
)
from taskgrove.manager import Session, TaskManager, TaskRepository, create_session
from taskgrove.models import Executor, Task, TaskError
from taskgrove.tree import TaskTreeNode

__all__ = [
    "AbortedError",
    "AsyncClient",
    "Executor",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "Session",
    "Task",
    "TaskError",
    "TaskManager",
    "TaskRepository",
    "TaskTreeNode",
    "TaskgroveError",
    "UnavailableError",
    "create_session",
    "statuses",
    "task_message",
]
__version__ = "0.1.0"
