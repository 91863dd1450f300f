"""Task-tree specs (the dicts `AsyncClient.create_task_tree` takes) and their ids."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskgrove import Task

ROOT = {"id": "root", "name": "root_task"}
"""A group at the top of a test tree; the builders' default parent."""


def group(name: str, parent: str | None = "root") -> dict[str, Any]:
    return {"id": name, "name": name, "parent_id": parent}


def sleeper(
    name: str, seconds: float = 0, parent: str | None = "root", **fields: Any
) -> dict[str, Any]:
    """A `sleep_executor` task; `inputs` in `fields` are added to `seconds`."""
    inputs = {"seconds": seconds, **fields.pop("inputs", {})}
    return {
        "id": name,
        "name": name,
        "executor": "sleep_executor",
        "parent_id": parent,
        "inputs": inputs,
        **fields,
    }


def ids(created: Mapping[str, Task]) -> dict[str, str]:
    """Local id -> stored id, of what `create_task_tree` returned."""
    return {local: task.id for local, task in created.items()}


def sleep_tree(
    n: int,
    *,
    user_id: str = "u",
    seconds: float | Callable[[int], float] = 0.0,
    dep_every: int = 5,
    max_attempts: int | None = None,
) -> list[dict[str, Any]]:
    """A group root with `n` sleep_executor children; every `dep_every`-th child depends
    on the one before it. `seconds` may be a function of the child's index;
    `max_attempts` is set on every child unless it is None."""
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": user_id}]
    for index in range(n):
        deps = [f"c{index - 1}"] if index % dep_every == dep_every - 1 else []
        spec: dict[str, Any] = {
            "id": f"c{index}",
            "name": "sleep_executor",
            "parent_id": "root",
            "inputs": {"seconds": seconds(index) if callable(seconds) else seconds},
            "dependencies": deps,
        }
        if max_attempts is not None:
            spec["max_attempts"] = max_attempts
        specs.append(spec)
    return specs
