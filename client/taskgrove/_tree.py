"""`TaskTreeNode`: a task with its children, and the subtree rules of DESIGN section 3."""

from __future__ import annotations

from collections.abc import Iterator

from taskgrove._models import Task
from taskgrove.domain.aggregation import StatusCounts, derived_status, mean_progress


class TaskTreeNode:
    """One task of a tree. `add_child` builds the local view of the tree; the server's
    tree stays the truth, and `TaskManager.distribute_task_tree` refreshes nodes from it."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.children: list[TaskTreeNode] = []
        self.parent: TaskTreeNode | None = None

    def add_child(self, child: TaskTreeNode) -> TaskTreeNode:
        child.parent = self
        self.children.append(child)
        return child

    def walk(self) -> Iterator[TaskTreeNode]:
        """This node and every descendant, parents first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def find(self, task_id: str) -> TaskTreeNode | None:
        return next((node for node in self.walk() if node.task.id == task_id), None)

    def _executables(self) -> list[Task]:
        return [node.task for node in self.walk() if not node.task.is_group]

    def calculate_status(self) -> str:
        """`pending`, `in_progress`, `completed`, `failed` or `cancelled` of this subtree,
        from the node itself and all its descendants."""
        counts = StatusCounts.of(task.status for task in self._executables())
        return derived_status(counts, execution_requested=self.task.execution_requested)

    def calculate_progress(self) -> float:
        """Mean progress (0..1) of the executable tasks of this subtree; `completed` = 1.0."""
        tasks = self._executables()
        return mean_progress(
            ((task.status, task.progress) for task in tasks), self.calculate_status()
        )

    def __repr__(self) -> str:
        task = self.task
        return f"TaskTreeNode({task.name!r}, {task.status!r}, children={len(self.children)})"
