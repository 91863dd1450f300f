"""The executor contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskgrove.domain import reasons

ProgressCallback = Callable[[float, str], None]


def _discard(line: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What an executor receives for one attempt of one task.

    Cancellation arrives as `asyncio.CancelledError` at the executor's next await; an
    executor that starts processes or threads must stop them before re-raising it.
    """

    task_id: str
    root_id: str
    name: str
    user_id: str
    attempt: int
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]
    dependency_results: Mapping[str, Any]
    """Results of the completed dependencies, by task id (optional ones only if completed)."""
    report_progress: ProgressCallback = field(repr=False)
    """`report_progress(fraction, message)`: fraction in [0, 1]; cheap to call often."""
    executor: str = ""
    """The executor's id."""
    timeout_s: float | None = None
    """The attempt's timeout (the engine enforces it; remote workers are told the deadline)."""
    log: Callable[[str], None] = field(default=_discard, repr=False)
    """`log(line)`: a line of the attempt's log (StreamTaskLogs, `taskgrove logs`); the
    attempt keeps its last 1,000 lines and 1 MiB."""


class AttemptGivenBack(Exception):
    """The attempt was handed back unfinished (a worker stopping): it runs again, and
    does not count as an attempt, as when the server itself stops."""


class ExecutorError(Exception):
    """Raise to fail a task with a chosen reason and JSON details."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = reasons.EXECUTOR_ERROR,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class Executor:
    """A named piece of code that runs tasks."""

    id: str
    run: Callable[[ExecutionContext], Awaitable[Any]]
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    """JSON schema (draft 2020-12) that a task's inputs must satisfy at creation."""
    remote: bool = False
    """Run by connected workers (WorkerService), not in the server."""
