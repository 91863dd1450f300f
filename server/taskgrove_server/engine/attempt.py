"""One attempt of one task: run the executor under its timeout and classify the end."""

from __future__ import annotations

import asyncio
import json
import traceback
from dataclasses import dataclass
from typing import Any

from taskgrove.domain import json_values, reasons, statuses

from taskgrove_server.engine.transitions import failure
from taskgrove_server.executors.base import (
    AttemptGivenBack,
    ExecutionContext,
    Executor,
    ExecutorError,
)

RESULT_PREVIEW_CHARS = 4096
TRACEBACK_CHARS = 16_000
"""The end of an executor's traceback kept with its error (where the raise is)."""
_encode = json.JSONEncoder(allow_nan=False).encode
_SURELY_PLAIN = 300
"""Texts this short hold no integer beyond a double (they have 309 digits or more)."""


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status: str
    """`completed` or `failed` (`pending` when given back)."""
    result: Any = None
    error: dict[str, Any] | None = None
    given_back: bool = False
    """Handed back unfinished (AttemptGivenBack): runs again, not counted."""


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
    except AttemptGivenBack:
        return AttemptOutcome(statuses.PENDING, given_back=True)
    except ExecutorError as exc:
        return AttemptOutcome(
            statuses.FAILED,
            error=failure(str(exc.reason)[:100], str(exc)[:2000], **_plain(exc.details)),
        )
    except Exception as exc:
        return _executor_failure(exc)
    try:
        text = _encode(result)
    except (TypeError, ValueError, RecursionError) as exc:
        return _invalid_result(str(exc))
    if not _flat(result):
        result = json.loads(text)  # what is stored and read back: tuples are lists...
    # Protobuf could not carry a value nested too deep or an integer beyond a double:
    # every later read of the task would fail. A short text can hold neither.
    if not _surely_plain(text) and (problem := json_values.problem(result)):
        return _invalid_result(problem)
    if len(text) > max_result_bytes:
        # Stored and sent with the task: a result too large for a reply is cut here.
        result = {
            "truncated": True,
            "size_bytes": len(text.encode()),
            "preview": text[:RESULT_PREVIEW_CHARS],
        }
    return AttemptOutcome(statuses.COMPLETED, result=result)


_SCALARS = (str, int, float, bool, type(None))


def _flat(value: Any) -> bool:
    """A scalar, or an object of scalars with string keys: JSON as it is (no tuple to
    turn into a list, no key to turn into a string)."""
    if type(value) is not dict:
        return type(value) in _SCALARS
    for key, item in value.items():
        if type(key) is not str or type(item) not in _SCALARS:
            return False
    return True


def _surely_plain(text: str) -> bool:
    """Whether a short JSON text is too short to hold what protobuf cannot carry."""
    brackets = text.count("{") + text.count("[")
    return len(text) <= _SURELY_PLAIN and brackets <= json_values.MAX_JSON_DEPTH


def _invalid_result(problem: str) -> AttemptOutcome:
    return AttemptOutcome(
        statuses.FAILED,
        error=failure(reasons.INVALID_RESULT, f"result is not plain JSON: {problem}"[:2000]),
    )


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """An executor's error details, if they are small plain JSON (else a description)."""
    try:
        text = _encode(details)
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
            traceback="".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:],
        ),
    )
