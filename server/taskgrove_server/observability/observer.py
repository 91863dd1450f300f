"""The probe the engine and the writer call (see taskgrove_server.probes): it feeds the
metrics and, when tracing is on, opens a span per attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskgrove_server.observability.metrics import Metrics
    from taskgrove_server.observability.tracing import AttemptTracer


class Observer:
    """Implements `AttemptProbe` and `CommitProbe` over optional metrics and tracing."""

    def __init__(self, metrics: Metrics | None, tracer: AttemptTracer | None) -> None:
        self._metrics = metrics
        self._tracer = tracer

    def execution_requested(self, root_id: str) -> None:
        if self._tracer is not None:
            self._tracer.remember(root_id)

    def attempt_started(
        self, executor: str, task_id: str, root_id: str, attempt: int, dispatch_s: float
    ) -> Any:
        if self._metrics is not None:
            self._metrics.dispatch.observe(dispatch_s)
        if self._tracer is not None:
            return self._tracer.start(executor, task_id, root_id, attempt)
        return None

    def attempt_ended(
        self,
        handle: Any,
        executor: str,
        outcome: str,
        duration_s: float,
        error: dict[str, Any] | None,
    ) -> None:
        if self._metrics is not None:
            self._metrics.attempts.get(executor, outcome).observe(duration_s)
        if handle is not None and self._tracer is not None:
            self._tracer.end(handle, outcome, error)

    def task_finished(self, status: str) -> None:
        if self._metrics is not None:
            self._metrics.task_finished(status)

    def batch_committed(self, writes: int, events: int, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.committed(writes, events, seconds)
