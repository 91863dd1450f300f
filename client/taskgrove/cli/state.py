"""A task tree kept up to date from a watch: a snapshot, then events.

A task's progress as kept here never decreases within one attempt (the highest reported),
so neither does a group's while the tree runs; a retry (a new attempt, a task back to
pending or out of a final status) lets it start again.

Every node keeps aggregates of its subtree (executable tasks by status, summed progress)
and the statuses of its direct children, updated incrementally along the ancestors of a
changed task, so a view of a tree of 10,000 tasks never has to walk the whole tree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from taskgrove._models import Task, TaskError, TaskEvent
from taskgrove.domain import statuses
from taskgrove.domain.aggregation import contribution, subtree_progress


@dataclass(slots=True, eq=False)
class TaskNode:
    """One task of the tree as last seen, with its subtree aggregates."""

    id: str
    name: str
    parent_id: str | None
    is_group: bool
    status: str
    order: int
    progress: float = 0.0
    progress_message: str = ""
    error: TaskError | None = None
    attempt: int = 0
    max_attempts: int = 0
    executor: str | None = None
    has_children: bool = False
    """Whether the server knows children of this task (loaded here or not)."""
    start_time: datetime | None = None
    end_time: datetime | None = None
    dependencies: tuple[str, ...] = ()
    """Ids of the tasks it depends on (known from a snapshot or a stored tree)."""
    parent: TaskNode | None = field(default=None, repr=False)
    children: dict[str, TaskNode] = field(default_factory=dict, repr=False)
    counts: Counter[str] = field(default_factory=Counter, repr=False)
    """Executable tasks of the subtree (this one included) by status."""
    progress_sum: float = 0.0
    """Sum of the progress of the subtree's executable tasks (completed counts 1.0)."""
    child_statuses: Counter[str] = field(default_factory=Counter, repr=False)
    """Statuses of the direct children."""

    @property
    def own_progress(self) -> float:
        """This task's progress as the subtree mean counts it."""
        return contribution(self.status, self.progress)

    @property
    def total(self) -> int:
        """Number of executable tasks in the subtree."""
        return sum(self.counts.values())

    @property
    def subtree_progress(self) -> float:
        """Mean progress of the subtree's executable tasks (DESIGN section 3)."""
        return subtree_progress(self.progress_sum, self.total, self.status)

    @property
    def is_finished(self) -> bool:
        return self.status in statuses.TERMINAL

    def ancestors_and_self(self) -> Iterator[TaskNode]:
        node: TaskNode | None = self
        while node is not None:
            yield node
            node = node.parent

    def walk(self) -> Iterator[TaskNode]:
        """This node and its descendants, parents first, siblings in order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children.values()))


class TreeState:
    """The tasks of one tree (or any set of tasks), by id."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskNode] = {}
        self.sequence = 0
        self._orphans: dict[str, list[TaskNode]] = {}
        self._order = 0

    # ------------------------------------------------------------------ reading

    def get(self, task_id: str) -> TaskNode | None:
        return self.tasks.get(task_id)

    def roots(self) -> list[TaskNode]:
        """Nodes whose parent is not in the state (the watched root, normally)."""
        return sorted(
            (node for node in self.tasks.values() if node.parent is None),
            key=lambda node: node.order,
        )

    def error_message(self, node: TaskNode) -> str:
        """The node's error message, where the dependency it names (DEPENDENCY_FAILED,
        DEPENDENCY_CANCELLED) is replaced by that task's name when it is known here (its own
        row shows its id)."""
        if node.error is None:
            return ""
        message = node.error.message
        dependency = node.error.details.get("dependency_id")
        named = self.tasks.get(dependency) if isinstance(dependency, str) else None
        if named is None or not isinstance(dependency, str):
            return message
        return message.replace(dependency, repr(named.name))

    # ------------------------------------------------------------------ loading

    def load(self, tasks: Iterable[Task], sequence: int = 0) -> None:
        """Add tasks (a snapshot or a stored tree); parents may come after children."""
        for task in tasks:
            self.add_task(task)
        self.sequence = max(self.sequence, sequence)

    def add_task(self, task: Task) -> TaskNode:
        existing = self.tasks.get(task.id)
        if existing is not None:
            self._update(
                existing,
                status=task.status,
                progress=task.progress,
                progress_message=task.progress_message,
                error=task.error,
                attempt=task.attempt,
            )
            existing.start_time, existing.end_time = task.start_time, task.end_time
            existing.dependencies = _dependency_ids(task)
            return existing
        node = TaskNode(
            id=task.id,
            name=task.name,
            parent_id=task.parent_id,
            is_group=task.is_group,
            status=task.status,
            order=self._next_order(),
            progress=task.progress,
            progress_message=task.progress_message,
            error=task.error,
            attempt=task.attempt,
            max_attempts=task.max_attempts,
            executor=task.executor,
            has_children=task.has_children,
            start_time=task.start_time,
            end_time=task.end_time,
            dependencies=_dependency_ids(task),
        )
        self._insert(node)
        return node

    def waiting_for(self, node: TaskNode) -> list[str]:
        """Names of the unfinished dependencies of a pending task that are known here."""
        if node.status != statuses.PENDING:
            return []
        found = (self.tasks.get(dep) for dep in node.dependencies)
        return [dep.name for dep in found if dep is not None and not dep.is_finished]

    # ------------------------------------------------------------------ events

    def apply(self, event: TaskEvent) -> TaskNode | None:
        """Apply one event; returns the node it changed (None for a deletion)."""
        self.sequence = max(self.sequence, event.sequence)
        if event.type == "deleted":
            self.remove(event.task_id)
            return None
        node = self.tasks.get(event.task_id)
        if node is None:
            node = TaskNode(
                id=event.task_id,
                name=event.name,
                parent_id=event.parent_id,
                is_group=event.is_group,
                status=event.status,
                order=self._next_order(),
                progress=event.progress,
                progress_message=event.progress_message,
                error=event.error,
                attempt=event.attempt,
            )
            self._insert(node)
        previous = node.status
        self._update(
            node,
            status=event.status,
            progress=event.progress,
            progress_message=event.progress_message,
            error=event.error if event.type == "status_changed" else node.error,
            attempt=event.attempt,
        )
        if event.time is not None and previous != event.status:
            if event.status == statuses.IN_PROGRESS and node.start_time is None:
                node.start_time = event.time
            if event.status in statuses.TERMINAL:
                node.end_time = event.time
            elif previous in statuses.TERMINAL:
                node.end_time = None  # retried: running again
        return node

    def remove(self, task_id: str) -> None:
        node = self.tasks.get(task_id)
        if node is None:
            return
        if node.parent is not None:
            parent = node.parent
            del parent.children[node.id]
            parent.child_statuses[node.status] -= 1
            for ancestor in parent.ancestors_and_self():
                ancestor.counts.subtract(node.counts)
                ancestor.progress_sum -= node.progress_sum
        for gone in list(node.walk()):
            del self.tasks[gone.id]
        for orphans in self._orphans.values():
            orphans[:] = [orphan for orphan in orphans if orphan.id in self.tasks]

    # ------------------------------------------------------------------ internals

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _insert(self, node: TaskNode) -> None:
        self.tasks[node.id] = node
        if not node.is_group:
            node.counts[node.status] += 1
            node.progress_sum = node.own_progress
        parent = self.tasks.get(node.parent_id) if node.parent_id else None
        if parent is not None:
            self._link(node, parent)
        elif node.parent_id:
            self._orphans.setdefault(node.parent_id, []).append(node)
        for orphan in self._orphans.pop(node.id, []):
            self._link(orphan, node)

    @staticmethod
    def _link(child: TaskNode, parent: TaskNode) -> None:
        child.parent = parent
        parent.has_children = True
        parent.children[child.id] = child
        parent.child_statuses[child.status] += 1
        for ancestor in parent.ancestors_and_self():
            ancestor.counts.update(child.counts)
            ancestor.progress_sum += child.progress_sum

    @staticmethod
    def _update(
        node: TaskNode,
        *,
        status: str,
        progress: float,
        progress_message: str,
        error: TaskError | None,
        attempt: int,
    ) -> None:
        old_status, old_progress = node.status, node.own_progress
        if not _reopened(old_status, status, node.attempt, attempt):
            # Within one attempt the shown progress never moves backwards (a late or lower
            # report, an end event without progress); a retry starts it again.
            progress = max(progress, node.progress)
        node.status = status
        node.progress = progress
        node.progress_message = progress_message
        node.error = error
        node.attempt = attempt
        if old_status != status and node.parent is not None:
            node.parent.child_statuses[old_status] -= 1
            node.parent.child_statuses[status] += 1
        if node.is_group:
            return
        delta = node.own_progress - old_progress
        for ancestor in node.ancestors_and_self():
            if old_status != status:
                ancestor.counts[old_status] -= 1
                ancestor.counts[status] += 1
            ancestor.progress_sum += delta


def _reopened(old_status: str, status: str, old_attempt: int, attempt: int) -> bool:
    """Whether a change starts a task's work again (a retry, automatic or asked for): a new
    attempt, back to pending, or out of a final status."""
    if attempt > old_attempt:
        return True
    if status == old_status:
        return False
    return status == statuses.PENDING or old_status in statuses.TERMINAL


def _dependency_ids(task: Task) -> tuple[str, ...]:
    return tuple(str(dep["id"]) for dep in task.dependencies if dep.get("id"))
