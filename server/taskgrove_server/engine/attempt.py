"""One attempt of one task: run the executor under its timeout and classify the end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from taskgrove import statuses

from taskgrove_server.executors.base import ExecutionContext, Executor, ExecutorError


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: str
    """`completed` or `failed`."""
    result: Any = None
    error: dict[str, Any] | None = None


def failure(reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"reason": reason, "message": message, "details": details}


async def run_attempt(
    executor: Executor, context: ExecutionContext, timeout_s: float | None
) -> AttemptOutcome:
    """Runs the executor; `asyncio.CancelledError` propagates to the caller."""
    try:
        async with asyncio.timeout(timeout_s) as scope:
            result = await executor.run(context)
    except TimeoutError as exc:
        if scope.expired():
            return AttemptOutcome(
                statuses.FAILED,
                error=failure("TIMEOUT", f"attempt exceeded its timeout of {timeout_s}s"),
            )
        return _executor_failure(exc)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # cancelled from outside: the caller decides what that means
        return _executor_failure(exc)  # the executor raised it by itself
    except ExecutorError as exc:
        return AttemptOutcome(statuses.FAILED, error=failure(exc.reason, str(exc), **exc.details))
    except Exception as exc:
        return _executor_failure(exc)
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return AttemptOutcome(
            statuses.FAILED,
            error=failure("INVALID_RESULT", f"result is not JSON serialisable: {exc}"),
        )
    return AttemptOutcome(statuses.COMPLETED, result=result)


def _executor_failure(exc: BaseException) -> AttemptOutcome:
    return AttemptOutcome(
        statuses.FAILED,
        error=failure("EXECUTOR_ERROR", f"{type(exc).__name__}: {exc}", type=type(exc).__name__),
    )
