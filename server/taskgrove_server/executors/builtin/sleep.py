"""`sleep_executor`: sleeps, reporting progress, and optionally fails (demos, benchmarks)."""

from __future__ import annotations

import asyncio
from typing import Any

from taskgrove_server.executors.base import ExecutionContext, Executor, ExecutorError

_PROGRESS_STEPS = 10


async def _run(context: ExecutionContext) -> Any:
    seconds = float(context.inputs.get("seconds", 0.0))
    if seconds > 0:
        step = seconds / _PROGRESS_STEPS
        for index in range(_PROGRESS_STEPS):
            await asyncio.sleep(step)
            context.report_progress(
                (index + 1) / _PROGRESS_STEPS, f"slept {step * (index + 1):.2f}s"
            )
    if context.inputs.get("fail", False):
        raise ExecutorError(str(context.inputs.get("message", "failed on request")))
    return {"slept_seconds": seconds, "result": context.inputs.get("result")}


SLEEP = Executor(
    id="sleep_executor",
    run=_run,
    description="Sleeps `seconds`, reporting progress; fails when `fail` is true.",
    input_schema={
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 86400},
            "fail": {"type": "boolean"},
            "message": {"type": "string"},
            "result": {},
        },
        "additionalProperties": False,
    },
)
