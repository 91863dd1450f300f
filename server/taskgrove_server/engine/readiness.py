"""What a dependency's status means for a task waiting on it (DESIGN section 3)."""

from __future__ import annotations

import enum

from taskgrove.domain import statuses


class Outcome(enum.Enum):
    WAIT = "wait"
    """The dependency has not finished: keep waiting."""
    SATISFIED = "satisfied"
    """Finished in a way that lets the dependent run."""
    FAIL = "fail"
    """A required dependency failed: the dependent fails with DEPENDENCY_FAILED."""
    CANCEL = "cancel"
    """A required dependency was cancelled: the dependent is cancelled (DEPENDENCY_CANCELLED)."""


def dependency_outcome(status: str | None, *, required: bool) -> Outcome:
    """Optional dependencies are waited for but never block; `None` means the dependency
    no longer exists, which fails a required dependent rather than leave it pending forever."""
    if status is None:
        return Outcome.FAIL if required else Outcome.SATISFIED
    if status not in statuses.TERMINAL:
        return Outcome.WAIT
    if not required or status == statuses.COMPLETED:
        return Outcome.SATISFIED
    return Outcome.FAIL if status == statuses.FAILED else Outcome.CANCEL
