"""The final summary of a run: counts by status, what failed and why (with the end of a
command's stderr or of an executor's traceback), the final results, and the file's ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from taskgrove._models import Task
from taskgrove.cli.output import dumps, format_duration
from taskgrove.cli.render import count_summary, status_text, symbol
from taskgrove.cli.state import TaskNode, TreeState
from taskgrove.domain import reasons, statuses

MAX_LISTED_FAILURES = 20
MAX_LISTED_RESULTS = 5
"""Results shown in the text summary; more are only counted (all are in `--json`)."""
MAX_RESULT_LINES = 40
"""Lines of pretty-printed results shown, shared by the results shown (at least 8 each;
the rest: `taskgrove get ID`)."""
MAX_LISTED_IDS = 20
"""File ids -> task ids shown in the text summary; more are only counted (all are in
`--json`)."""
MAX_LINE_CHARS = 160
TAIL_LINES = 5
"""Last lines of a failed command's stderr shown."""
TRACEBACK_LINES = 8
"""Last lines of an executor's traceback shown (where the exception was raised)."""


def tail(text: str, count: int) -> list[str]:
    """The last `count` non-blank lines of `text`, each cut to `MAX_LINE_CHARS`."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [_cut(line) for line in lines[-count:]]


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def relabel(value: Any, labels: dict[str, str]) -> Any:
    """`value` with object keys that are task ids of `labels` replaced by their labels
    (an aggregated result keyed by the file's ids instead of UUIDs). Iterative."""
    top: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(value, top, 0)]
    while stack:
        source, target, key = stack.pop()
        if isinstance(source, dict):
            copied: dict[str, Any] = {}
            target[key] = copied
            for name, item in source.items():
                label = labels.get(str(name), str(name))
                if label != name and label in source:  # keep a key the label would hide
                    label = name
                copied[label] = None  # the keys keep their order; values come later
                stack.append((item, copied, label))
        elif isinstance(source, list):
            items: list[Any] = [None] * len(source)
            target[key] = items
            stack.extend((item, items, index) for index, item in enumerate(source))
        else:
            target[key] = source
    return top[0]


def failure_lines(details: dict[str, Any]) -> list[str]:
    """What a failure's details add for people: the end of a command's stderr, the end
    of an executor's traceback."""
    lines: list[str] = []
    stderr = details.get("stderr")
    if isinstance(stderr, str) and stderr.strip():
        lines += [f"stderr: {line}" for line in tail(stderr, TAIL_LINES)]
    trace = details.get("traceback")
    if isinstance(trace, str) and trace.strip():
        lines += [
            "traceback (last lines):",
            *(f"  {line}" for line in tail(trace, TRACEBACK_LINES)),
        ]
    return lines


@dataclass(frozen=True, slots=True)
class Outcome:
    """A completed executable task's result, with the file's id of the task."""

    ref: str
    id: str
    name: str
    result: Any
    final: bool
    """Nothing else in the tree depends on it: one of the tree's outputs."""


def unique_names(tasks: list[Task]) -> dict[str, str]:
    """Task ids by name, for the names only one of `tasks` has."""
    counted = Counter(task.name for task in tasks)
    return {task.name: task.id for task in tasks if counted[task.name] == 1}


def outcomes(tasks: list[Task], task_ids: dict[str, str]) -> list[Outcome]:
    """The results of the completed executable tasks of a stored tree, in tree order."""
    refs = {task_id: ref for ref, task_id in task_ids.items()}
    depended = {dep.get("id") for task in tasks for dep in task.dependencies}
    return [
        Outcome(
            ref=refs.get(task.id, task.id),
            id=task.id,
            name=task.name,
            result=task.result,
            final=task.id not in depended,
        )
        for task in tasks
        if not task.is_group and task.status == statuses.COMPLETED
    ]


UPSTREAM_REASONS = frozenset({reasons.DEPENDENCY_FAILED, reasons.DEPENDENCY_CANCELLED})
"""Why a task ended that only says a dependency did."""


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
    task_ids: dict[str, str] = field(default_factory=dict)
    """The file's ids (explicit `id`, else the name) -> task ids."""
    results: list[Outcome] = field(default_factory=list)
    """Every completed executable task's result (empty when the tree could not be read)."""

    @property
    def succeeded(self) -> bool:
        return self.status == statuses.COMPLETED

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @classmethod
    def of(
        cls,
        state: TreeState,
        root_id: str,
        wall_seconds: float,
        *,
        task_ids: dict[str, str] | None = None,
        stored: list[Task] | None = None,
    ) -> RunSummary:
        root = state.tasks[root_id]
        if task_ids is None:  # not from a file: the names that are unique stand for ids
            task_ids = unique_names(stored or [])
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
            task_ids=dict(task_ids or {}),
            results=outcomes(stored or [], task_ids or {}),
        )

    def ref_of(self, task_id: str) -> str | None:
        return next((ref for ref, known in self.task_ids.items() if known == task_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "root_id": self.root_id,
            "name": self.name,
            "status": self.status,
            "succeeded": self.succeeded,
            "wall_seconds": round(self.wall_seconds, 3),
            "total": self.total,
            "counts": self.counts,
            "task_ids": self.task_ids,
            "results": {outcome.ref: outcome.result for outcome in self.results},
            "failures": [
                {
                    "id": failure.id,
                    "ref": self.ref_of(failure.id),
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
        """`✔ completed  name: 4 tasks (4 completed) in 1.23s`, the root, the file's ids,
        the final results, then the failures (with their stderr or traceback ends)."""
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
        lines += self._render_ids()
        lines += self._render_results()
        if self.failures:
            # The tasks that failed by themselves first; those that only followed a
            # dependency's failure or cancel are counted apart (they are not the problem).
            upstream = [f for f in self.failures if f.reason in UPSTREAM_REASONS]
            own = [f for f in self.failures if f.reason not in UPSTREAM_REASONS]
            failed = sum(1 for f in own if f.status == statuses.FAILED)
            cancelled = len(own) - failed
            parts = [f"{failed} failed"] if failed else []
            parts += [f"{cancelled} cancelled"] if cancelled else []
            parts += [f"{len(upstream)} because of a dependency"] if upstream else []
            lines.append(Text(f"problems ({', '.join(parts)}):", style="bold red"))
            for failure in (own + upstream)[:MAX_LISTED_FAILURES]:
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
                for extra in failure_lines(failure.details):
                    lines.append(Text(f"      {extra}", style="dim"))
            hidden = len(self.failures) - MAX_LISTED_FAILURES
            if hidden > 0:
                lines.append(Text(f"  … and {hidden} more", style="dim"))
        return Group(*lines)

    def _render_results(self) -> list[RenderableType]:
        """The tree's final results (those of tasks nothing depends on; all results when
        none is final), pretty-printed and cut, keyed by the file's ids where known."""
        shown = [outcome for outcome in self.results if outcome.final] or self.results
        shown = [outcome for outcome in shown if outcome.result is not None]
        if not shown:
            return []
        if len(shown) > MAX_LISTED_RESULTS:  # a crowd: one line, --json has them
            return [
                Text.assemble(
                    Text("results:", style="bold"),
                    f" {len(shown)} tasks returned one (--json has them all; taskgrove get ID)",
                )
            ]
        labels = {task_id: ref for ref, task_id in self.task_ids.items()}
        lines: list[RenderableType] = [Text("results:", style="bold")]
        per_result = max(8, MAX_RESULT_LINES // min(len(shown), MAX_LISTED_RESULTS))
        for outcome in shown[:MAX_LISTED_RESULTS]:
            label = (
                outcome.name if outcome.ref == outcome.name else f"{outcome.name} [{outcome.ref}]"
            )
            text = dumps(relabel(outcome.result, labels), indent=2).splitlines()
            head = Text.assemble(
                "  ", Text(label, style="bold"), Text(f" {outcome.id}", style="dim")
            )
            if len(text) == 1:
                head.append(f"  {_cut(text[0])}")
                lines.append(head)
                continue
            lines.append(head)
            lines += [Text(f"    {_cut(line)}") for line in text[:per_result]]
            if len(text) > per_result:
                more = len(text) - per_result
                lines.append(
                    Text(f"    … {more} more lines (taskgrove get {outcome.id})", style="dim")
                )
        return lines

    def _render_ids(self) -> list[RenderableType]:
        """`ids:` the file's ids (explicit `id`, else the name) and their task ids."""
        if not self.task_ids:
            return []
        items = list(self.task_ids.items())
        if len(items) > MAX_LISTED_IDS:  # a large tree: its view shows each task's id
            return [
                Text.assemble(
                    Text("ids:", style="bold"), f" {len(items)} tasks (--json has them all)"
                )
            ]
        width = max(len(ref) for ref, _ in items)
        lines: list[RenderableType] = [Text("ids:", style="bold")]
        lines += [Text(f"  {ref.ljust(width)}  {task_id}") for ref, task_id in items]
        return lines
