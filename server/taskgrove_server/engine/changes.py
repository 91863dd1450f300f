"""A validated set of changes to a pending task (UpdateTask)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskgrove_server.engine.node import Node

UPDATABLE = (
    "name",
    "priority",
    "dependencies",
    "inputs",
    "params",
    "max_attempts",
    "retry_backoff",
    "timeout",
)


@dataclass(slots=True)
class TaskChanges:
    """Only the fields named in the update mask are set (None: unchanged)."""

    name: str | None = None
    priority: int | None = None
    dependencies: dict[str, bool] | None = None
    inputs: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    max_attempts: int | None = None
    retry_backoff_ms: int | None = None
    timeout_ms: int | None = None
    clear_timeout: bool = False

    def apply(self, node: Node) -> None:
        if self.name is not None:
            node.name = self.name
        if self.priority is not None:
            node.priority = self.priority
        if self.dependencies is not None:
            node.dependencies = dict(self.dependencies)
        if self.inputs is not None:
            node.inputs = self.inputs
        if self.params is not None:
            node.params = self.params
        if self.max_attempts is not None:
            node.max_attempts = self.max_attempts
        if self.retry_backoff_ms is not None:
            node.retry_backoff_ms = self.retry_backoff_ms
        if self.timeout_ms is not None or self.clear_timeout:
            node.timeout_ms = self.timeout_ms

    def columns(self) -> dict[str, Any]:
        """The stored columns these changes set."""
        values: dict[str, Any] = {}
        for name in ("name", "priority", "inputs", "params", "max_attempts", "retry_backoff_ms"):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        if self.dependencies is not None:
            values["dependencies"] = [
                {"id": dep, "required": required} for dep, required in self.dependencies.items()
            ]
        if self.timeout_ms is not None or self.clear_timeout:
            values["timeout_ms"] = self.timeout_ms
        return values
