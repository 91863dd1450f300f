"""Subtree status and progress rules (DESIGN section 3), shared by server and SDK.

Both functions look at the executable tasks of a subtree: the node itself when it has an
executor, and every executable descendant. Groups contribute nothing of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from taskgrove import statuses


@dataclass(slots=True)
class StatusCounts:
    """Counts of executable tasks in a subtree, by status class."""

    total: int = 0
    pending: int = 0
    terminal: int = 0
    failed: int = 0
    cancelled: int = 0

    def add(self, status: str, sign: int = 1) -> None:
        self.total += sign
        if status == statuses.PENDING:
            self.pending += sign
        elif status in statuses.TERMINAL:
            self.terminal += sign
            if status == statuses.FAILED:
                self.failed += sign
            elif status == statuses.CANCELLED:
                self.cancelled += sign

    @classmethod
    def of(cls, task_statuses: Iterable[str]) -> StatusCounts:
        counts = cls()
        for status in task_statuses:
            counts.add(status)
        return counts


def derived_status(counts: StatusCounts, *, execution_requested: bool) -> str:
    """Status of a subtree from the counts of its executable tasks.

    `pending` until something starts; `in_progress` while anything is not terminal; then
    `failed` if any failed, else `cancelled` if any was cancelled, else `completed`. A subtree
    with nothing executable is `completed` once executed (there is nothing left to do).
    """
    if counts.total == 0:
        return statuses.COMPLETED if execution_requested else statuses.PENDING
    if counts.pending == counts.total:
        return statuses.PENDING
    if counts.terminal < counts.total:
        return statuses.IN_PROGRESS
    if counts.failed:
        return statuses.FAILED
    if counts.cancelled:
        return statuses.CANCELLED
    return statuses.COMPLETED


def mean_progress(items: Iterable[tuple[str, float]]) -> float:
    """Mean progress of executable tasks given as (status, last reported progress).

    `completed` counts as 1.0; an empty subtree has progress 0.0.
    """
    total = 0.0
    count = 0
    for status, progress in items:
        total += 1.0 if status == statuses.COMPLETED else progress
        count += 1
    return total / count if count else 0.0
