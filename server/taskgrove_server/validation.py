"""Validation of new tasks before anything is written (no gRPC, no SQL here).

`validate_new_tasks` checks a whole request against the executors and the existing tasks it
refers to, and either raises one `TaskgroveError` listing every violation or returns the
tasks resolved (executor, owner, parent, priority) in parents-first order.

Deadlocks are cycles of "waits for": a task waits for its dependencies; a dependency on a
group waits for the group's whole subtree. Each task therefore has two vertices, `run`
(the task itself is done; for a group, its subtree) and `sub` (its whole subtree is done),
and a request is rejected when the graph over new and reachable existing tasks has a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskgrove_server.errors import Code, FieldViolation, TaskgroveError, invalid, not_found
from taskgrove_server.executors import ExecutorRegistry

DEFAULT_PRIORITY = 2
DEFAULT_OWNER = "default"
MAX_NAME_LENGTH = 255


@dataclass(slots=True)
class TaskSpec:
    """A task as requested; ids may be client-local (CreateTaskTree)."""

    ref: str
    """Client-local id (CreateTaskTree) or a placeholder (CreateTask)."""
    field: str
    """Field path of this task in the request, e.g. `tasks[3]`."""
    name: str
    parent: str | None
    user_id: str
    executor: str
    priority: int | None
    dependencies: list[tuple[str, bool]]
    inputs: dict[str, Any]
    params: dict[str, Any]
    max_attempts: int
    retry_backoff_ms: int | None
    """None: the default (1 s)."""
    timeout_ms: int | None
    original_task_id: str | None = None
    """Set on copies (CopyTaskTree)."""
    label: str | None = None
    """How messages name a task the request gave no id (its `ref` is then internal)."""


def spec_from_stored(row: Mapping[Any, Any], field: str, parent: str | None) -> TaskSpec:
    """A stored task as a spec again (UpdateTask re-validates it, CopyTaskTree copies it)."""
    return TaskSpec(
        ref=row["id"],
        field=field,
        name=row["name"],
        parent=parent,
        user_id=row["user_id"],
        executor=row["executor"] or "",
        priority=row["priority"],
        dependencies=[(d["id"], bool(d.get("required", True))) for d in row["dependencies"]],
        inputs=dict(row["inputs"]),
        params=dict(row["params"]),
        max_attempts=row["max_attempts"],
        retry_backoff_ms=row["retry_backoff_ms"],
        timeout_ms=row["timeout_ms"],
    )


@dataclass(frozen=True, slots=True)
class ExistingTask:
    """What validation needs to know of a stored task."""

    id: str
    root_id: str
    user_id: str
    is_group: bool
    dependencies: tuple[str, ...] = ()
    children: tuple[str, ...] = ()


@dataclass(slots=True)
class ResolvedTask:
    spec: TaskSpec
    executor: str | None
    owner: str
    priority: int
    parent_is_local: bool


@dataclass(slots=True)
class ValidatedTree:
    tasks: list[ResolvedTask]
    """Parents before children."""
    attach_parent: ExistingTask | None
    owner: str


def resolve_executor(spec: TaskSpec, registry: ExecutorRegistry) -> str | None:
    """The executor that runs the task, or None for a group (DESIGN section 1)."""
    if spec.executor:
        return spec.executor
    return spec.name if spec.name in registry else None


def validate_new_tasks(
    specs: Sequence[TaskSpec],
    existing: Mapping[str, ExistingTask],
    registry: ExecutorRegistry,
) -> ValidatedTree:
    """Check a request; `existing` holds every stored task it refers to (and may hold more)."""
    violations: list[FieldViolation] = []

    def violate(field_path: str, reason: str, description: str) -> None:
        violations.append(FieldViolation(field_path, description, reason))

    local = {spec.ref: spec for spec in specs}
    if len(local) != len(specs):
        seen: set[str] = set()
        for spec in specs:
            if spec.ref in seen:
                violate(f"{spec.field}.id", "DUPLICATE_ID", f"id {spec.ref!r} is used twice")
            seen.add(spec.ref)

    tops = [spec for spec in specs if spec.parent is None or spec.parent not in local]
    # An unknown parent is NOT_FOUND, before anything else: the request names a missing task.
    for spec in tops:
        if spec.parent is not None and spec.parent not in existing:
            raise not_found(
                "PARENT_NOT_FOUND", "parent task", spec.parent, f"{spec.field}.parent_id"
            )
    if len(tops) != 1:
        detail = ", ".join(spec.field for spec in tops) or "none (parent links form a cycle)"
        raise invalid(
            [
                *violations,  # duplicate ids found above are reported too
                FieldViolation(
                    "tasks",
                    f"a tree needs exactly one top task (without a parent in the request); "
                    f"found: {detail}",
                    "INVALID_TREE_SHAPE",
                ),
            ]
        )
    top = tops[0]
    attach_parent = existing.get(top.parent) if top.parent is not None else None
    owner = top.user_id or (attach_parent.user_id if attach_parent else "") or DEFAULT_OWNER
    if attach_parent is not None and attach_parent.user_id != owner:
        # Another owner's tasks are invisible, not forbidden.
        raise not_found(
            "PARENT_NOT_FOUND", "parent task", attach_parent.id, f"{top.field}.parent_id"
        )

    ordered = _parents_first(specs, top)
    if len(ordered) != len(specs):
        violate("tasks", "INVALID_TREE_SHAPE", "parent links form a cycle")

    resolved: list[ResolvedTask] = []
    for spec in ordered:
        executor = resolve_executor(spec, registry)
        task_owner = spec.user_id or owner
        if task_owner != owner:
            violate(
                f"{spec.field}.user_id",
                "OWNER_MISMATCH",
                f"every task of a tree belongs to {owner!r}",
            )
        if not spec.name.strip():
            violate(f"{spec.field}.name", "NAME_REQUIRED", "name must not be empty")
        elif len(spec.name) > MAX_NAME_LENGTH:
            violate(f"{spec.field}.name", "NAME_TOO_LONG", f"name is longer than {MAX_NAME_LENGTH}")
        if spec.priority is not None and spec.priority < 0:
            violate(f"{spec.field}.priority", "INVALID_PRIORITY", "priority must be >= 0")
        if spec.max_attempts < 0:
            violate(f"{spec.field}.max_attempts", "INVALID_RETRY_POLICY", "must be >= 0")
        if spec.retry_backoff_ms is not None and spec.retry_backoff_ms < 0:
            violate(f"{spec.field}.retry_backoff", "INVALID_RETRY_POLICY", "must be >= 0")
        if spec.timeout_ms is not None and spec.timeout_ms <= 0:
            violate(f"{spec.field}.timeout", "INVALID_TIMEOUT", "timeout must be positive")
        if spec.executor and spec.executor not in registry:
            violate(
                f"{spec.field}.executor",
                "UNKNOWN_EXECUTOR",
                f"executor {spec.executor!r} is not registered",
            )
        elif executor is not None:
            for message in registry.input_errors(executor, spec.inputs):
                violate(f"{spec.field}.inputs", "INVALID_INPUTS", message)
        if executor is None and spec.dependencies:
            violate(
                f"{spec.field}.dependencies",
                "GROUP_WITH_DEPENDENCIES",
                "a group (a task without an executor) cannot have dependencies",
            )
        seen_deps: set[str] = set()
        for index, (dep_id, _required) in enumerate(spec.dependencies):
            path = f"{spec.field}.dependencies[{index}].id"
            if dep_id in seen_deps:
                violate(path, "DUPLICATE_DEPENDENCY", f"dependency {dep_id!r} is listed twice")
            seen_deps.add(dep_id)
            if dep_id in local:
                continue
            target = existing.get(dep_id)
            if target is None or target.user_id != owner:
                violate(path, "DEPENDENCY_NOT_FOUND", f"dependency {dep_id!r} does not exist")
        resolved.append(
            ResolvedTask(
                spec=spec,
                executor=executor,
                owner=owner,
                priority=spec.priority if spec.priority is not None else DEFAULT_PRIORITY,
                parent_is_local=spec is not top,
            )
        )
    if violations:
        raise invalid(violations)

    cycle = find_cycle(resolved, existing)
    if cycle:
        cycle, field_path = _name_cycle(cycle, local)
        labels = {spec.ref: spec.label for spec in specs if spec.label}
        path = " -> ".join(labels.get(ref, ref) for ref in cycle)
        raise TaskgroveError(
            code=Code.INVALID_ARGUMENT,
            reason="DEPENDENCY_CYCLE",
            message=f"dependency cycle: {path}",
            violations=[
                FieldViolation(field_path, f"dependency cycle: {path}", "DEPENDENCY_CYCLE")
            ],
            metadata={"cycle": path},
        )
    return ValidatedTree(tasks=resolved, attach_parent=attach_parent, owner=owner)


def _name_cycle(cycle: list[str], local: Mapping[str, TaskSpec]) -> tuple[list[str], str]:
    """The cycle rotated to start at a new task whose dependency is one of its edges, and
    the field path of that dependency (e.g. `tasks[2].dependencies[0].id`).

    Such a task exists in every cycle through new tasks: stored tasks never depend on new
    ones, and parent/child edges alone cannot close a cycle.
    """
    ring = cycle[:-1]
    for index, ref in enumerate(ring):
        spec = local.get(ref)
        if spec is None:
            continue
        following = ring[(index + 1) % len(ring)]
        for dep_index, (dep_id, _required) in enumerate(spec.dependencies):
            if dep_id == following:
                rotated = [*ring[index:], *ring[:index], ref]
                return rotated, f"{spec.field}.dependencies[{dep_index}].id"
    return cycle, "tasks"


def _parents_first(specs: Sequence[TaskSpec], top: TaskSpec) -> list[TaskSpec]:
    children: dict[str, list[TaskSpec]] = {}
    for spec in specs:
        if spec is not top and spec.parent is not None:
            children.setdefault(spec.parent, []).append(spec)
    ordered: list[TaskSpec] = []
    queue = [top]
    seen: set[int] = set()  # by identity: a duplicate id is reported as such, not as a cycle
    while queue:
        spec = queue.pop()
        if id(spec) in seen:
            continue
        seen.add(id(spec))
        ordered.append(spec)
        queue.extend(reversed(children.get(spec.ref, [])))
    return ordered


Vertex = tuple[str, str]  # ("run" | "sub", task id)


def find_cycle(
    tasks: Sequence[ResolvedTask],
    existing: Mapping[str, ExistingTask],
) -> list[str] | None:
    """The ids along a waits-for cycle (first id repeated at the end), or None."""
    if not any(task.spec.dependencies for task in tasks):
        return None  # parent links alone form a tree, never a cycle
    is_group: dict[str, bool] = {t.id: t.is_group for t in existing.values()}
    deps: dict[str, list[str]] = {t.id: list(t.dependencies) for t in existing.values()}
    children: dict[str, list[str]] = {t.id: list(t.children) for t in existing.values()}
    for task in tasks:
        ref = task.spec.ref
        is_group[ref] = task.executor is None
        deps[ref] = [dep for dep, _ in task.spec.dependencies]
        children.setdefault(ref, [])
    for task in tasks:
        if task.spec.parent is not None:
            children.setdefault(task.spec.parent, []).append(task.spec.ref)

    def edges(vertex: Vertex) -> list[Vertex]:
        kind, ident = vertex
        group = is_group.get(ident, False)
        if kind == "run":
            if group:
                return [("sub", child) for child in children.get(ident, ())]
            return [("run", dep) for dep in deps.get(ident, ()) if dep in is_group]
        # sub: the task itself and every child's subtree.
        return [("run", ident)] + ([] if group else [("sub", c) for c in children.get(ident, ())])

    white, grey, black = 0, 1, 2
    color: dict[Vertex, int] = {}
    for task in tasks:
        start: Vertex = ("run", task.spec.ref)
        if color.get(start, white) != white:
            continue
        stack: list[tuple[Vertex, list[Vertex]]] = [(start, edges(start))]
        color[start] = grey
        while stack:
            vertex, pending = stack[-1]
            if not pending:
                color[vertex] = black
                stack.pop()
                continue
            nxt = pending.pop()
            state = color.get(nxt, white)
            if state == grey:
                path = [v for v, _ in stack]
                path = [*path[path.index(nxt) :], nxt]
                return _collapse(path)
            if state == white:
                color[nxt] = grey
                stack.append((nxt, edges(nxt)))
    return None


def _collapse(path: Sequence[Vertex]) -> list[str]:
    ids: list[str] = []
    for _, ident in path:
        if not ids or ids[-1] != ident:
            ids.append(ident)
    if len(ids) == 1:  # a task that depends on itself: keep the closing id
        ids.append(ids[0])
    return ids
