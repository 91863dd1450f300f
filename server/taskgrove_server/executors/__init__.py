"""The executor contract, the registry, and the built-in executors.

An executor is registered as an `Executor`: an id, a description, a JSON schema for its
inputs, and an async `run(context)` that returns a JSON value. Third-party packages expose
one under the entry point group `taskgrove.executors`.
"""

from __future__ import annotations

from taskgrove_server.executors.base import (
    AttemptGivenBack,
    ExecutionContext,
    Executor,
    ExecutorError,
)
from taskgrove_server.executors.registry import DisabledExecutor, ExecutorRegistry

__all__ = [
    "AttemptGivenBack",
    "DisabledExecutor",
    "ExecutionContext",
    "Executor",
    "ExecutorError",
    "ExecutorRegistry",
]
