"""Tree shapes for the benchmark, as `AsyncClient.create_task_tree` task dicts.

Every leaf is a `sleep_executor` task with inputs {"seconds": 0}; every inner node is a
group (no executor). Ids are client-local; the top task's id is always `ROOT_ID`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TaskDict = dict[str, Any]

ROOT_ID = "root"
LEAF_EXECUTOR = "sleep_executor"
LEAF_INPUTS: dict[str, Any] = {"seconds": 0}
FANOUT = 10


def group(task_id: str, parent_id: str | None = None) -> TaskDict:
    """A group task (no executor: its status is derived from its subtree)."""
    return {
        "id": task_id,
        "name": "root_task" if parent_id is None else "group",
        "parent_id": parent_id,
    }


def leaf(task_id: str, parent_id: str, dependencies: list[str] | None = None) -> TaskDict:
    """A `sleep_executor` task that sleeps 0 s."""
    return {
        "id": task_id,
        "name": LEAF_EXECUTOR,
        "executor": LEAF_EXECUTOR,
        "parent_id": parent_id,
        "inputs": dict(LEAF_INPUTS),
        "dependencies": dependencies or [],
    }


def flat(leaves: int) -> list[TaskDict]:
    """One root group with `leaves` independent children."""
    return [group(ROOT_ID), *(leaf(f"t{i}", ROOT_ID) for i in range(leaves))]


def chain(leaves: int) -> list[TaskDict]:
    """One root group with `leaves` children, each depending on the previous one."""
    tasks = [group(ROOT_ID)]
    for i in range(leaves):
        tasks.append(leaf(f"t{i}", ROOT_ID, [f"t{i - 1}"] if i else None))
    return tasks


def _capacity(leaves: int, fanout: int) -> int:
    """Leaves each child of a node holding `leaves` leaves gets: the largest power of
    `fanout` below `leaves` (so a full tree has `fanout` children on every level)."""
    capacity = 1
    while capacity * fanout < leaves:
        capacity *= fanout
    return capacity


def _subtree(parent_id: str, leaves: int, fanout: int, out: list[TaskDict]) -> None:
    if leaves <= fanout:
        out.extend(leaf(f"{parent_id}.{i}", parent_id) for i in range(leaves))
        return
    capacity = _capacity(leaves, fanout)
    for index, start in enumerate(range(0, leaves, capacity)):
        child = f"{parent_id}.{index}"
        out.append(group(child, parent_id))
        _subtree(child, min(capacity, leaves - start), fanout, out)


def balanced(leaves: int, fanout: int = FANOUT) -> list[TaskDict]:
    """Groups of groups with `fanout` children each, down to `leaves` leaf tasks."""
    tasks = [group(ROOT_ID)]
    _subtree(ROOT_ID, leaves, fanout, tasks)
    return tasks


SHAPES: dict[str, Callable[[int], list[TaskDict]]] = {
    "flat": flat,
    "chain": chain,
    "balanced": balanced,
}


def leaf_count(tasks: list[TaskDict]) -> int:
    return sum(1 for task in tasks if task.get("executor"))
