"""`aggregate_results_executor`: collects its dependencies' results."""

from __future__ import annotations

from typing import Any

from taskgrove_server.executors.base import ExecutionContext, Executor


async def _run(context: ExecutionContext) -> Any:
    return {"results": dict(context.dependency_results), "count": len(context.dependency_results)}


AGGREGATE_RESULTS = Executor(
    id="aggregate_results_executor",
    run=_run,
    description="Returns the results of its dependencies, by task id.",
    input_schema={"type": "object"},
)
