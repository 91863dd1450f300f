"""What the engine and the writer tell observability (metrics, traces), as protocols.

The rooms that do the work call these hooks; `observability/` (above every room but
app/cli) implements them with Prometheus and OpenTelemetry, so nothing below it imports
either. Every hook is optional (`None`: nothing is measured, nothing is called) and must
be O(1) on the hot path: the engine calls `attempt_started`/`attempt_ended` once per
attempt and the writer `batch_committed` once per commit.
"""

from __future__ import annotations

from typing import Any, Protocol


class AttemptProbe(Protocol):
    def execution_requested(self, root_id: str) -> None:
        """A call (CreateTaskTree with execute, ExecuteTask) asked this tree to run; called
        in that call's context (tracing links the tree's attempts to its span)."""
        ...

    def attempt_started(
        self, executor: str, task_id: str, root_id: str, attempt: int, dispatch_s: float
    ) -> Any:
        """An executor starts, `dispatch_s` after its task was claimed (the claim's commit
        included); returns a handle given back to `attempt_ended`."""
        ...

    def attempt_ended(
        self,
        handle: Any,
        executor: str,
        outcome: str,
        duration_s: float,
        error: dict[str, Any] | None,
    ) -> None:
        """The attempt ended: `outcome` is completed, failed, timeout or cancelled."""
        ...

    def task_finished(self, status: str) -> None:
        """An executable task reached a terminal status (completed, failed, cancelled)."""
        ...


class CommitProbe(Protocol):
    def batch_committed(self, writes: int, events: int, seconds: float) -> None:
        """The writer committed one transaction of `writes` writes in `seconds`, and
        publishes `events` events of it."""
        ...
