"""What a worker's function receives for one attempt, and how it fails on purpose."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskgrove.domain import reasons

MAX_LOG_LINE = 16_384


class ExecutorFailure(Exception):
    """Raise from a worker's function to fail its task with a chosen reason and details."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = reasons.EXECUTOR_ERROR,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = dict(details or {})


class _LineHandler(logging.Handler):
    """Sends every record of an attempt's logger to the server as lines."""

    def __init__(self, emit_lines: Callable[[Sequence[str]], None]) -> None:
        super().__init__()
        self._emit_lines = emit_lines
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a bad format string must not fail the task
            text = str(record.msg)
        self._emit_lines([line[:MAX_LOG_LINE] for line in text.splitlines() or [""]])


def attempt_logger(name: str, emit_lines: Callable[[Sequence[str]], None]) -> logging.Logger:
    """A logger of its own (not in logging's registry: one per attempt, gone with it)."""
    logger = logging.Logger(name, logging.DEBUG)
    logger.addHandler(_LineHandler(emit_lines))
    return logger


@dataclass(slots=True)
class WorkerContext:
    """One attempt of one task, as a worker's function sees it."""

    task_id: str
    root_id: str
    name: str
    executor: str
    attempt: int
    user_id: str
    inputs: dict[str, Any]
    params: dict[str, Any]
    dependency_results: dict[str, Any]
    """Results of the completed dependencies, by task id."""
    deadline: datetime | None
    """When the server ends the attempt as TIMEOUT (None: no timeout)."""
    _emit_lines: Callable[[Sequence[str]], None] = field(repr=False)
    _progress: Callable[[float, str], None] = field(repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the server cancels the attempt: a sync function should check it and
    return (an async one is interrupted with CancelledError at its next await)."""
    _logger: logging.Logger | None = field(default=None, repr=False)

    @property
    def log(self) -> logging.Logger:
        """Lines logged here are stored with the attempt on the server."""
        # Made on first use: most attempts never log, and a logger per attempt cost a
        # worker 8% of its CPU on trivial tasks.
        if self._logger is None:
            self._logger = attempt_logger(f"taskgrove.task.{self.task_id}", self._emit_lines)
        return self._logger

    def report_progress(self, fraction: float, message: str = "") -> None:
        """How far the attempt has come, in [0, 1] (the server keeps the latest)."""
        self._progress(min(1.0, max(0.0, float(fraction))), str(message))

    async def run_process(self, *args: str, **kwargs: Any) -> tuple[int, bytes, bytes]:
        """Run a program to its end: (exit code, stdout, stderr). If the attempt is
        cancelled meanwhile, the program is killed before the cancellation goes on."""
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kwargs
        )
        try:
            stdout, stderr = await process.communicate()
        except asyncio.CancelledError:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        assert process.returncode is not None
        return process.returncode, stdout, stderr
