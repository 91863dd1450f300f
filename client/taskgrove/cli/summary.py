"""The final summary of a run: counts by status, what failed and why, wall time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from taskgrove.cli.output import format_duration
from taskgrove.cli.render import count_summary, status_text, symbol
from taskgrove.cli.state import TaskNode, TreeState
from taskgrove.domain import statuses

MAX_LISTED_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Failure:
    """An executable task that ended failed or cancelled."""

    id: str
    name: str
    status: str
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    readable: str = ""
    """The message with the name of the dependency it names (for people)."""

    @classmethod
    def of(cls, node: TaskNode, state: TreeState) -> Failure:
        error = node.error
        return cls(
            id=node.id,
            name=node.name,
            status=node.status,
            reason=error.reason if error else "",
            message=error.message if error else "",
            details=dict(error.details) if error else {},
            readable=state.error_message(node),
        )


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a tree ended. `succeeded` only when the whole tree completed."""

    root_id: str
    name: str
    status: str
    wall_seconds: float
    counts: dict[str, int]
    failures: list[Failure]

    @property
    def succeeded(self) -> bool:
        return self.status == statuses.COMPLETED

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def of(cls, state: TreeState, root_id: str, wall_seconds: float) -> RunSummary:
        root = state.tasks[root_id]
        failures = [
            Failure.of(node, state)
            for node in sorted(root.walk(), key=lambda node: node.order)
            if not node.is_group and node.status in (statuses.FAILED, statuses.CANCELLED)
        ]
        return cls(
            root_id=root.id,
            name=root.name,
            status=root.status,
            wall_seconds=wall_seconds,
            counts={status: max(0, root.counts.get(status, 0)) for status in statuses.ALL},
            failures=failures,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "root_id": self.root_id,
            "name": self.name,
            "status": self.status,
            "succeeded": self.succeeded,
            "wall_seconds": round(self.wall_seconds, 3),
            "total": self.total,
            "counts": self.counts,
            "failures": [
                {
                    "id": failure.id,
                    "name": failure.name,
                    "status": failure.status,
                    "reason": failure.reason,
                    "message": failure.message,
                    "details": failure.details,
                }
                for failure in self.failures
            ],
        }

    def render(self) -> RenderableType:
        """`✔ completed  name: 4 tasks (4 completed) in 1.23s`, then the failures."""
        head = Text.assemble(
            symbol(self.status),
            " ",
            status_text(self.status),
            "  ",
            Text(self.name, style="bold"),
            f": {self.total} tasks ({count_summary(Counter(self.counts)) or 'nothing to run'})",
            f" in {format_duration(self.wall_seconds)}",
        )
        lines: list[RenderableType] = [head, Text(f"root {self.root_id}", style="dim")]
        if self.failures:
            failed = sum(1 for f in self.failures if f.status == statuses.FAILED)
            cancelled = len(self.failures) - failed
            parts = [f"{failed} failed"] if failed else []
            parts += [f"{cancelled} cancelled"] if cancelled else []
            lines.append(Text(f"problems ({', '.join(parts)}):", style="bold red"))
            for failure in self.failures[:MAX_LISTED_FAILURES]:
                lines.append(
                    Text.assemble(
                        "  ",
                        symbol(failure.status),
                        " ",
                        Text(failure.name, style="bold"),
                        Text(f" {failure.id}", style="dim"),
                        "  ",
                        Text(f"{failure.reason or failure.status}: {failure.readable}", "red"),
                    )
                )
            hidden = len(self.failures) - MAX_LISTED_FAILURES
            if hidden > 0:
                lines.append(Text(f"  … and {hidden} more", style="dim"))
        return Group(*lines)
