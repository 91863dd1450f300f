"""Subtree status and progress rules (DESIGN section 3), shared by server and SDK.

Both rules look at the executable tasks of a subtree: the node itself when it has an
executor, and every executable descendant. Groups contribute nothing of their own.
Callers that keep running sums (the server's engine, the CLI's live tree) and callers that
have the tasks at hand (`TaskTreeNode`, a stored subtree) apply the same two functions:
`derived_status` over `StatusCounts`, and `subtree_progress` over the summed
`contribution`s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from taskgrove.domain import statuses


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


def contribution(status: str, progress: float) -> float:
    """What one executable task adds to its subtree's progress: `completed` counts as
    1.0, any other status as the progress last reported."""
    return 1.0 if status == statuses.COMPLETED else progress


def subtree_progress(progress_sum: float, executable_count: int, status: str) -> float:
    """A subtree's progress: the mean `contribution` of its executable tasks; a subtree
    with none is done (1.0) once `completed`, else 0.0."""
    if executable_count:
        return min(1.0, max(0.0, progress_sum / executable_count))
    return 1.0 if status == statuses.COMPLETED else 0.0


def mean_progress(items: Iterable[tuple[str, float]], status: str = "") -> float:
    """`subtree_progress` of executable tasks given as (status, last reported progress);
    `status` is the subtree's own (it decides when there are none)."""
    total = 0.0
    count = 0
    for item_status, progress in items:
        total += contribution(item_status, progress)
        count += 1
    return subtree_progress(total, count, status)


@dataclass(frozen=True, slots=True)
class ProgressInput:
    """What `group_progress` needs of one task of a subtree."""

    id: str
    parent_id: str | None
    is_group: bool
    status: str
    progress: float


def group_progress(tasks: Sequence[ProgressInput]) -> dict[str, float]:
    """The `subtree_progress` of every group among `tasks` (one whole subtree, parents
    before children), in one pass from the leaves up."""
    sums: dict[str, list[float]] = {task.id: [0.0, 0.0] for task in tasks}
    for task in reversed(tasks):  # children before parents
        total = sums[task.id]
        if not task.is_group:
            total[0] += contribution(task.status, task.progress)
            total[1] += 1
        parent = sums.get(task.parent_id) if task.parent_id else None
        if parent is not None:
            parent[0] += total[0]
            parent[1] += total[1]
    return {
        task.id: subtree_progress(sums[task.id][0], int(sums[task.id][1]), task.status)
        for task in tasks
        if task.is_group
    }
