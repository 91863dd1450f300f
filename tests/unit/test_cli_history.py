"""`get`'s attempt history rebuilt from a task's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskgrove import Task, TaskError, TaskEvent
from taskgrove.cli.history import attempts_of, history_lines
from taskgrove.domain import statuses

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOOM = TaskError("EXECUTOR_ERROR", "boom")


def event(
    sequence: int,
    status: str,
    *,
    attempt: int = 1,
    kind: str = "status_changed",
    error: TaskError | None = None,
) -> TaskEvent:
    return TaskEvent(
        sequence=sequence,
        task_id="t",
        root_id="t",
        user_id="u",
        parent_id=None,
        name="t",
        type=kind,
        status=status,
        previous_status=None,
        progress=0.0,
        progress_message="",
        error=error,
        attempt=attempt,
        is_group=False,
        time=T0 + timedelta(seconds=sequence),
    )


def test_attempts_from_events_retried_interrupted_and_completed() -> None:
    history = attempts_of(
        [
            event(1, statuses.PENDING, attempt=0, kind="created"),
            event(2, statuses.IN_PROGRESS),
            event(3, statuses.IN_PROGRESS, kind="progress"),
            event(4, statuses.PENDING, error=BOOM),  # failed, retried after a backoff
            event(5, statuses.IN_PROGRESS, attempt=2),
            event(6, statuses.PENDING, attempt=2),  # the server stopped mid-attempt
            event(7, statuses.IN_PROGRESS, attempt=3),
            event(9, statuses.COMPLETED, attempt=3),
        ]
    )
    assert not history.pruned
    assert [(a.number, a.outcome) for a in history.attempts] == [
        (1, "retried"),
        (2, "interrupted"),
        (3, "completed"),
    ]
    first = history.attempts[0]
    assert (first.start_time, first.end_time, first.error) == (
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=4),
        BOOM,
    )
    assert history.attempts[2].to_json()["end_time"] == (T0 + timedelta(seconds=9)).isoformat()


def test_a_pruned_history_says_so_and_keeps_what_is_left() -> None:
    task = Task(id="t", name="t", user_id="u", status=statuses.FAILED, attempt=2)
    empty = attempts_of([])
    assert empty.pruned and empty.attempts == []
    assert history_lines(empty, task) == [("attempts", "history pruned; the task shows attempt 2")]
    partial = attempts_of(
        [
            event(7, statuses.IN_PROGRESS, attempt=2),
            event(8, statuses.FAILED, attempt=2, error=BOOM),
        ]
    )
    assert partial.pruned
    rows = history_lines(partial, task)
    assert rows[0][1].startswith("history pruned")
    assert rows[1][1].startswith("#2 failed") and rows[1][1].endswith("EXECUTOR_ERROR: boom")
