"""One attempt of one task: run the executor under its timeout and classify the end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from taskgrove.domain import json_values, reasons, statuses

from taskgrove_server.engine.transitions import failure
from taskgrove_server.executors.base import ExecutionContext, Executor, ExecutorError

RESULT_PREVIEW_CHARS = 4096


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: str
    """`completed` or `failed`."""
    result: Any = None
    error: dict[str, Any] | None = None


async def run_attempt(
    executor: Executor, context: ExecutionContext, timeout_s: float | None, max_result_bytes: int
) -> AttemptOutcome:
    """Runs the executor; `asyncio.CancelledError` propagates to the caller."""
    try:
        async with asyncio.timeout(timeout_s) as scope:
            result = await executor.run(context)
    except TimeoutError as exc:
        if scope.expired():
            return AttemptOutcome(
                statuses.FAILED,
                error=failure(reasons.TIMEOUT, f"attempt exceeded its timeout of {timeout_s}s"),
            )
        return _executor_failure(exc)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # cancelled from outside: the caller decides what that means
        return _executor_failure(exc)  # the executor raised it by itself
    except ExecutorError as exc:
        return AttemptOutcome(
            statuses.FAILED,
            error=failure(str(exc.reason)[:100], str(exc)[:2000], **_plain(exc.details)),
        )
    except Exception as exc:
        return _executor_failure(exc)
    try:
        text = json.dumps(result, allow_nan=False)
        # What is stored and read back (tuples are lists, keys are strings).
        result = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        return _invalid_result(str(exc))
    if problem := json_values.problem(result):
        # Protobuf could not carry it: every later read of the task would fail.
        return _invalid_result(problem)
    if len(text) > max_result_bytes:
        # Stored and sent with the task: a result too large for a reply is cut here.
        result = {
            "truncated": True,
            "size_bytes": len(text.encode()),
            "preview": text[:RESULT_PREVIEW_CHARS],
        }
    return AttemptOutcome(statuses.COMPLETED, result=result)


def _invalid_result(problem: str) -> AttemptOutcome:
    return AttemptOutcome(
        statuses.FAILED,
        error=failure(reasons.INVALID_RESULT, f"result is not plain JSON: {problem}"[:2000]),
    )


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """An executor's error details, if they are small plain JSON (else a description)."""
    try:
        text = json.dumps(details, allow_nan=False)
        plain: dict[str, Any] = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {"details": "not plain JSON"}
    if json_values.problem(plain):
        return {"details": "not plain JSON"}
    return plain if len(text) <= 16_384 else {"details": f"{len(text)} characters, left out"}


def _executor_failure(exc: BaseException) -> AttemptOutcome:
    return AttemptOutcome(
        statuses.FAILED,
        error=failure(
            reasons.EXECUTOR_ERROR,
            f"{type(exc).__name__}: {exc}"[:2000],
            type=type(exc).__name__,
        ),
    )
