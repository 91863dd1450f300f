"""taskgrove SDK: create, run and inspect task trees on a taskgrove server.

    from taskgrove import TaskManager, TaskTreeNode, create_session

The tutorial's flow (`create_session`, `TaskManager`, `TaskTreeNode`) sits on
`AsyncClient`, one method per RPC with SDK models in and out; `AsyncClient.stub` is the raw
generated stub (`taskgrove.v1`). `taskgrove.domain` holds the rules the server applies too.
"""

from __future__ import annotations

from taskgrove._client import AsyncClient, task_message
from taskgrove._config import ClientConfig, TLSConfig
from taskgrove._errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TaskgroveError,
    UnauthenticatedError,
    UnavailableError,
)
from taskgrove._manager import Session, TaskManager, TaskRepository, create_session
from taskgrove._models import (
    Executor,
    Explanation,
    LogLine,
    Snapshot,
    Task,
    TaskError,
    TaskEvent,
    WaitingDependency,
)
from taskgrove._tree import TaskTreeNode
from taskgrove._worker import Worker
from taskgrove._worker_context import ExecutorFailure, WorkerContext
from taskgrove.domain import reasons, statuses

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "ClientConfig",
    "DeadlineExceededError",
    "Executor",
    "ExecutorFailure",
    "Explanation",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "LogLine",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "Session",
    "Snapshot",
    "TLSConfig",
    "Task",
    "TaskError",
    "TaskEvent",
    "TaskManager",
    "TaskRepository",
    "TaskTreeNode",
    "TaskgroveError",
    "UnauthenticatedError",
    "UnavailableError",
    "WaitingDependency",
    "Worker",
    "WorkerContext",
    "create_session",
    "reasons",
    "statuses",
    "task_message",
]
__version__ = "0.1.0"
