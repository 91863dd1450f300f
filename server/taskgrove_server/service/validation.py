"""Validation of new tasks before anything is written (no gRPC, no SQL here).

`validate_new_tasks` checks a whole request against the executors and the existing tasks it
refers to, and either raises one `ServiceError` listing every violation or returns the
tasks resolved (executor, owner, parent, priority) in parents-first order.

Deadlocks are cycles of "waits for": a task waits for its dependencies; a dependency on a
group waits for the group's whole subtree. Each task therefore has two vertices, `run`
(the task itself is done; for a group, its subtree) and `sub` (its whole subtree is done),
and a request is rejected when the graph over new and reachable existing tasks has a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from taskgrove.domain import reasons

from taskgrove_server.errors import (
    Code,
    FieldViolation,
    ServiceError,
    invalid,
    invalid_field,
    not_found,
)
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.service import limits
from taskgrove_server.service.specs import TaskSpec

DEFAULT_PRIORITY = 2
DEFAULT_OWNER = "default"
MAX_VIOLATIONS = 1000
"""Collecting stops here: a request with more problems hears of the first ones."""


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
    user_id: str
    priority: int
    parent_is_local: bool


@dataclass(slots=True)
class ValidatedTree:
    tasks: list[ResolvedTask]
    """Parents before children."""
    attach_parent: ExistingTask | None
    """The stored task the tree hangs from (None: a new root)."""
    user_id: str


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
    found = 0  # counted on past MAX_VIOLATIONS: the reply says how many there are

    def violate(field_path: str, reason: str, description: str) -> None:
        nonlocal found
        found += 1
        if len(violations) < MAX_VIOLATIONS:
            violations.append(FieldViolation(field_path, description, reason))

    local = {spec.ref: spec for spec in specs}
    if len(local) != len(specs):
        seen: set[str] = set()
        for spec in specs:
            if spec.ref in seen:
                violate(
                    f"{spec.field}.id", reasons.DUPLICATE_ID, f"id {_short(spec.ref)} is used twice"
                )
            seen.add(spec.ref)

    tops = [spec for spec in specs if spec.parent_id is None or spec.parent_id not in local]
    # An unknown parent is NOT_FOUND, before anything else: the request names a missing task.
    for spec in tops:
        if spec.parent_id is not None and spec.parent_id not in existing:
            raise not_found(
                reasons.PARENT_NOT_FOUND, "parent task", spec.parent_id, f"{spec.field}.parent_id"
            )
    if len(tops) != 1:
        named = [spec.field for spec in tops[:10]]
        detail = ", ".join(named) or "none (parent links form a cycle)"
        if len(tops) > 10:
            detail += f" and {len(tops) - 10} more"
        raise invalid(
            [
                *violations,  # duplicate ids found above are reported too
                FieldViolation(
                    "tasks",
                    f"a tree needs exactly one top task (without a parent in the request); "
                    f"found: {detail}",
                    reasons.INVALID_TREE_SHAPE,
                ),
            ],
            total=found + 1,
        )
    top = tops[0]
    attach_parent = existing.get(top.parent_id) if top.parent_id is not None else None
    user_id = top.user_id or (attach_parent.user_id if attach_parent else "") or DEFAULT_OWNER
    if attach_parent is not None and attach_parent.user_id != user_id:
        # Another owner's tasks are invisible, not forbidden.
        raise not_found(
            reasons.PARENT_NOT_FOUND, "parent task", attach_parent.id, f"{top.field}.parent_id"
        )

    ordered = _parents_first(specs, top)
    if len(ordered) != len(specs):
        violate("tasks", reasons.INVALID_TREE_SHAPE, "parent links form a cycle")

    resolved: list[ResolvedTask] = []
    for spec in ordered:
        _check_values(spec, violate)
        executor = resolve_executor(spec, registry)
        if (spec.user_id or user_id) != user_id:
            violate(
                f"{spec.field}.user_id",
                reasons.OWNER_MISMATCH,
                f"every task of a tree belongs to {_short(user_id)}",
            )
        if spec.executor and spec.executor not in registry:
            violate(
                f"{spec.field}.executor",
                reasons.UNKNOWN_EXECUTOR,
                registry.unknown(spec.executor),
            )
        elif executor is not None:
            for message in registry.input_errors(executor, spec.inputs)[:20]:
                violate(f"{spec.field}.inputs", reasons.INVALID_INPUTS, message[:500])
        if executor is None and spec.dependencies:
            violate(
                f"{spec.field}.dependencies",
                reasons.GROUP_WITH_DEPENDENCIES,
                "a group (a task without an executor) cannot have dependencies",
            )
        seen_deps: set[str] = set()
        for index, (dep_id, _required) in enumerate(spec.dependencies):
            path = f"{spec.field}.dependencies[{index}].id"
            if dep_id in seen_deps:
                violate(
                    path,
                    reasons.DUPLICATE_DEPENDENCY,
                    f"dependency {_short(dep_id)} is listed twice",
                )
            seen_deps.add(dep_id)
            if dep_id in local:
                continue
            target = existing.get(dep_id)
            if target is None or target.user_id != user_id:
                violate(
                    path,
                    reasons.DEPENDENCY_NOT_FOUND,
                    f"dependency {_short(dep_id)} does not exist",
                )
        resolved.append(
            ResolvedTask(
                spec=spec,
                executor=executor,
                user_id=user_id,
                priority=spec.priority if spec.priority is not None else DEFAULT_PRIORITY,
                parent_is_local=spec is not top,
            )
        )
    if violations:
        raise invalid(violations, total=found)

    cycle = find_cycle(resolved, existing)
    if cycle:
        cycle, field_path = _name_cycle(cycle, local)
        labels = {spec.ref: spec.label for spec in specs if spec.label}
        path = _cycle_text([labels.get(ref, ref) for ref in cycle])
        raise ServiceError(
            code=Code.INVALID_ARGUMENT,
            reason=reasons.DEPENDENCY_CYCLE,
            message=f"dependency cycle: {path}",
            violations=[
                FieldViolation(field_path, f"dependency cycle: {path}", reasons.DEPENDENCY_CYCLE)
            ],
            metadata={"cycle": path, "cycle_length": str(len(cycle) - 1)},
        )
    return ValidatedTree(tasks=resolved, attach_parent=attach_parent, user_id=user_id)


def _short(value: str, limit: int = 80) -> str:
    """A value quoted for a message, cut so a huge one cannot blow up the error."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _cycle_text(names: list[str], keep: int = 8) -> str:
    """`a -> b -> ... -> a`, shortened in the middle when the cycle is long."""
    names = [name if len(name) <= 80 else name[:80] + "..." for name in names]
    if len(names) > 2 * keep + 1:
        hidden = len(names) - 2 * keep
        names = [*names[:keep], f"... {hidden} more ...", *names[-keep:]]
    return " -> ".join(names)


def _text_problem(value: str, max_length: int) -> str | None:
    if len(value) > max_length:
        return f"longer than {max_length} characters"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def _check_values(spec: TaskSpec, violate: Callable[[str, str, str], None]) -> None:
    """Bounds on the task's own values (DESIGN section 8; see limits.py)."""
    field = spec.field
    if not spec.name.strip():
        violate(f"{field}.name", reasons.NAME_REQUIRED, "name must not be empty")
    elif len(spec.name) > limits.MAX_NAME_LENGTH:
        violate(
            f"{field}.name", reasons.NAME_TOO_LONG, f"name is longer than {limits.MAX_NAME_LENGTH}"
        )
    elif "\x00" in spec.name:
        violate(f"{field}.name", reasons.INVALID_STRING, "name contains a NUL character")
    if problem := _text_problem(spec.user_id, limits.MAX_USER_ID_LENGTH):
        violate(f"{field}.user_id", reasons.INVALID_USER_ID, f"user_id is {problem}")
    if problem := _text_problem(spec.executor, limits.MAX_EXECUTOR_LENGTH):
        violate(f"{field}.executor", reasons.INVALID_STRING, f"executor is {problem}")
    for name, value in (("id", spec.ref), ("parent_id", spec.parent_id or "")):
        if problem := _text_problem(value, limits.MAX_ID_LENGTH):
            violate(f"{field}.{name}", reasons.INVALID_ID, f"{name} is {problem}")
    if spec.priority is not None and spec.priority < 0:
        violate(f"{field}.priority", reasons.INVALID_PRIORITY, "priority must be >= 0")
    if not 0 <= spec.max_attempts <= limits.MAX_ATTEMPTS:
        violate(
            f"{field}.max_attempts",
            reasons.INVALID_RETRY_POLICY,
            f"must be between 0 and {limits.MAX_ATTEMPTS}",
        )
    if (
        spec.retry_backoff_ms is not None
        and not 0 <= spec.retry_backoff_ms <= limits.MAX_DURATION_MS
    ):
        violate(
            f"{field}.retry_backoff",
            reasons.INVALID_RETRY_POLICY,
            "must be between 0 and 366 days",
        )
    if spec.timeout_ms is not None and not 0 < spec.timeout_ms <= limits.MAX_DURATION_MS:
        violate(
            f"{field}.timeout",
            reasons.INVALID_TIMEOUT,
            "timeout must be positive and at most 366 days",
        )
    if len(spec.dependencies) > limits.MAX_DEPENDENCIES:
        violate(
            f"{field}.dependencies",
            reasons.TOO_MANY_DEPENDENCIES,
            f"more than {limits.MAX_DEPENDENCIES} dependencies",
        )
    for index, (dep_id, _) in enumerate(spec.dependencies[: limits.MAX_DEPENDENCIES]):
        if problem := _text_problem(dep_id, limits.MAX_ID_LENGTH):
            violate(f"{field}.dependencies[{index}].id", reasons.INVALID_ID, f"id is {problem}")


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
        if spec is not top and spec.parent_id is not None:
            children.setdefault(spec.parent_id, []).append(spec)
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
        if task.spec.parent_id is not None:
            children.setdefault(task.spec.parent_id, []).append(task.spec.ref)

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


def check_depth(tree: ValidatedTree, parent_depth: int) -> None:
    """Refuse (TREE_TOO_DEEP) a tree whose deepest task would hang below
    `limits.MAX_TREE_DEPTH` levels; `parent_depth`: the levels of the stored parent it is
    attached under (0 for a new root). Tasks come parents first: one pass, no recursion."""
    depth: dict[str, int] = {}
    for task in tree.tasks:
        spec = task.spec
        above = depth[spec.parent_id] if task.parent_is_local and spec.parent_id else parent_depth
        depth[spec.ref] = above + 1
        if above + 1 > limits.MAX_TREE_DEPTH:
            raise invalid_field(
                f"{spec.field}.parent_id",
                reasons.TREE_TOO_DEEP,
                f"the task would be at level {above + 1}; trees may be at most "
                f"{limits.MAX_TREE_DEPTH} levels deep",
            )
