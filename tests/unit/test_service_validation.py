"""Unit tests of the pure validation functions (no gRPC, no database).

`validate_new_tasks` checks a whole creation request; `find_cycle` looks for a waits-for cycle
(a task waits for its dependencies; a dependency on a group waits for the group's subtree).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.service.limits import MAX_NAME_LENGTH
from taskgrove_server.service.specs import TaskSpec
from taskgrove_server.service.validation import (
    DEFAULT_OWNER,
    DEFAULT_PRIORITY,
    ExistingTask,
    ResolvedTask,
    ValidatedTree,
    find_cycle,
    validate_new_tasks,
)

REGISTRY = ExecutorRegistry.default(load_entry_points=False)

SLEEP = "sleep_executor"
AGGREGATE = "aggregate_results_executor"
SYSTEM_INFO = "system_info_executor"


def spec(
    ref: str,
    index: int,
    name: str = SLEEP,
    *,
    parent: str | None = None,
    deps: Iterable[str | tuple[str, bool]] = (),
    **overrides: Any,
) -> TaskSpec:
    """A task as the API layer would build it for `tasks[index]`."""
    fields: dict[str, Any] = {
        "ref": ref,
        "field": f"tasks[{index}]",
        "name": name,
        "parent_id": parent,
        "user_id": "",
        "executor": "",
        "priority": None,
        "dependencies": [(d, True) if isinstance(d, str) else d for d in deps],
        "inputs": {},
        "params": {},
        "max_attempts": 0,
        "retry_backoff_ms": 0,
        "timeout_ms": None,
    }
    fields.update(overrides)
    return TaskSpec(**fields)


def tree(*specs: TaskSpec) -> list[TaskSpec]:
    """Re-number the specs' field paths in list order (tasks[0], tasks[1], ...)."""
    for index, item in enumerate(specs):
        item.field = f"tasks[{index}]"
    return list(specs)


def existing(
    task_id: str,
    *,
    root: str | None = None,
    user: str = DEFAULT_OWNER,
    group: bool = False,
    deps: Sequence[str] = (),
    children: Sequence[str] = (),
) -> ExistingTask:
    return ExistingTask(
        id=task_id,
        root_id=root or task_id,
        user_id=user,
        is_group=group,
        dependencies=tuple(deps),
        children=tuple(children),
    )


def by_id(*tasks: ExistingTask) -> dict[str, ExistingTask]:
    return {task.id: task for task in tasks}


def validate(
    specs: Sequence[TaskSpec], stored: Mapping[str, ExistingTask] | None = None
) -> ValidatedTree:
    return validate_new_tasks(specs, stored or {}, REGISTRY)


def rejected(
    specs: Sequence[TaskSpec], stored: Mapping[str, ExistingTask] | None = None
) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        validate(specs, stored)
    return caught.value


def fields(error: ServiceError) -> list[tuple[str, str]]:
    return [(v.field, v.reason) for v in error.violations]


def assert_cycle(path: Sequence[str], expected: Sequence[str]) -> None:
    """`path` is closed (first id repeated last) and walks `expected` in cyclic order."""
    assert len(path) >= 2, path
    assert path[0] == path[-1], path
    ring = list(path[:-1])
    assert sorted(ring) == sorted(expected), path
    start = ring.index(expected[0])
    assert ring[start:] + ring[:start] == list(expected), path


def cycle_error(error: ServiceError) -> list[str]:
    """The cycle path of a DEPENDENCY_CYCLE error, checked for consistency."""
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == "DEPENDENCY_CYCLE"
    path = error.metadata["cycle"]
    assert error.message == f"dependency cycle: {path}"
    assert len(error.violations) == 1
    violation = error.violations[0]
    assert violation.reason == "DEPENDENCY_CYCLE"
    assert violation.description == f"dependency cycle: {path}"
    return path.split(" -> ")


# --------------------------------------------------------------------------- valid requests


def test_single_task_defaults() -> None:
    result = validate([spec("task", 0)])
    assert result.attach_parent is None
    assert result.user_id == DEFAULT_OWNER
    [task] = result.tasks
    assert task.executor == SLEEP  # chosen by name
    assert task.user_id == DEFAULT_OWNER
    assert task.priority == DEFAULT_PRIORITY == 2
    assert task.parent_is_local is False


def test_executor_choice_by_field_by_name_or_group() -> None:
    result = validate(
        tree(
            spec("root", 0, "root_task"),
            spec("named", 0, SYSTEM_INFO, parent="root"),
            spec("explicit", 0, "my display name", parent="root", executor=AGGREGATE),
            spec("folder", 0, "not an executor", parent="root"),
        )
    )
    executors = {task.spec.ref: task.executor for task in result.tasks}
    assert executors == {
        "root": None,
        "named": SYSTEM_INFO,
        "explicit": AGGREGATE,
        "folder": None,
    }


def test_parents_first_order_keeps_sibling_order() -> None:
    # Children listed before their parents in the request.
    result = validate(
        tree(
            spec("b1", 0, parent="b"),
            spec("a", 0, parent="root"),
            spec("b", 0, "group b", parent="root"),
            spec("root", 0, "root_task"),
            spec("b2", 0, parent="b"),
        )
    )
    order = [task.spec.ref for task in result.tasks]
    assert order == ["root", "a", "b", "b1", "b2"]
    local = {task.spec.ref: task.parent_is_local for task in result.tasks}
    assert local == {"root": False, "a": True, "b": True, "b1": True, "b2": True}


def test_owner_comes_from_top_task_and_applies_to_all() -> None:
    result = validate(
        tree(spec("root", 0, "root_task", user_id="alice"), spec("a", 0, parent="root"))
    )
    assert result.user_id == "alice"
    assert {task.user_id for task in result.tasks} == {"alice"}


def test_attached_tree_inherits_parent_owner() -> None:
    parent = existing("P", user="bob", group=True)
    result = validate([spec("t", 0, parent="P")], by_id(parent))
    assert result.attach_parent == parent
    assert result.user_id == "bob"
    assert result.tasks[0].parent_is_local is False


def test_priority_zero_and_explicit_values_kept() -> None:
    result = validate(
        tree(
            spec("root", 0, "root_task", priority=0),
            spec("a", 0, parent="root", priority=3),
            spec("b", 0, parent="root", priority=None),
        )
    )
    assert [task.priority for task in result.tasks] == [0, 3, 2]


def test_dependencies_on_local_and_existing_tasks_accepted() -> None:
    stored = by_id(existing("E1"), existing("G1", group=True, children=("E1",)))
    result = validate(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, parent="root", deps=["E1"]),
            spec("b", 0, AGGREGATE, parent="root", deps=["a", ("G1", False)]),
        ),
        stored,
    )
    assert [task.spec.ref for task in result.tasks] == ["root", "a", "b"]


def test_name_of_max_length_is_accepted() -> None:
    validate([spec("task", 0, "x" * MAX_NAME_LENGTH)])


def test_valid_inputs_accepted() -> None:
    validate([spec("task", 0, SYSTEM_INFO, inputs={"resource": "memory"})])


def test_group_inputs_are_not_validated() -> None:
    # A group runs no code: its inputs are stored as given.
    validate([spec("task", 0, "folder", inputs={"anything": [1, 2]})])


def test_diamond_is_not_a_cycle() -> None:
    validate(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, parent="root"),
            spec("b", 0, parent="root", deps=["a"]),
            spec("c", 0, parent="root", deps=["a"]),
            spec("d", 0, AGGREGATE, parent="root", deps=["b", "c"]),
        )
    )


def test_depending_on_own_executable_parent_or_child_is_not_a_cycle() -> None:
    # Parent links are organisational: an executable parent never waits for its children.
    validate(
        tree(
            spec("root", 0, "root_task"),
            spec("p", 0, parent="root", deps=["c"]),
            spec("c", 0, parent="p"),
            spec("d", 0, parent="p", deps=["p"]),
        )
    )


def test_depending_on_a_sibling_group_is_not_a_cycle() -> None:
    validate(
        tree(
            spec("root", 0, "root_task"),
            spec("g", 0, "group g", parent="root"),
            spec("g1", 0, parent="g"),
            spec("g2", 0, parent="g", deps=["g1"]),
            spec("after", 0, AGGREGATE, parent="root", deps=["g"]),
        )
    )


# --------------------------------------------------------------------------- rejections


def test_unknown_parent_is_not_found() -> None:
    error = rejected([spec("task", 0, parent="missing")])
    assert error.code is Code.NOT_FOUND
    assert error.reason == "PARENT_NOT_FOUND"
    assert error.metadata == {"id": "missing"}
    assert fields(error) == [("tasks[0].parent_id", "PARENT_NOT_FOUND")]
    assert "missing" in error.message


def test_parent_of_another_owner_is_not_found() -> None:
    stored = by_id(existing("P", user="bob", group=True))
    error = rejected([spec("task", 0, parent="P", user_id="alice")], stored)
    assert error.code is Code.NOT_FOUND
    assert error.reason == "PARENT_NOT_FOUND"


def test_unknown_parent_reported_before_other_violations() -> None:
    error = rejected([spec("task", 0, "", parent="missing", priority=-1)])
    assert error.code is Code.NOT_FOUND
    assert error.reason == "PARENT_NOT_FOUND"


def test_two_top_tasks() -> None:
    error = rejected(tree(spec("a", 0), spec("b", 0)))
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == "INVALID_TREE_SHAPE"
    assert fields(error) == [("tasks", "INVALID_TREE_SHAPE")]
    assert "tasks[0], tasks[1]" in error.violations[0].description


def test_parent_links_forming_a_cycle_without_top() -> None:
    error = rejected(tree(spec("a", 0, parent="b"), spec("b", 0, parent="a")))
    assert error.reason == "INVALID_TREE_SHAPE"
    assert "parent links form a cycle" in error.violations[0].description


def test_parent_links_cycle_beside_a_top() -> None:
    error = rejected(
        tree(spec("root", 0, "root_task"), spec("a", 0, parent="b"), spec("b", 0, parent="a"))
    )
    assert error.reason == "INVALID_TREE_SHAPE"
    assert fields(error) == [("tasks", "INVALID_TREE_SHAPE")]
    assert "parent links form a cycle" in error.violations[0].description


def test_duplicate_local_ids_only_reported_as_duplicates() -> None:
    error = rejected(
        tree(spec("root", 0, "root_task"), spec("a", 0, parent="root"), spec("a", 0, parent="root"))
    )
    assert error.reason == "DUPLICATE_ID"
    # Not also a bogus "parent links form a cycle".
    assert fields(error) == [("tasks[2].id", "DUPLICATE_ID")]


def test_duplicate_ids_are_still_validated_each() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, parent="root"),
            spec("a", 0, parent="root", priority=-1),
        )
    )
    assert sorted(fields(error)) == [
        ("tasks[2].id", "DUPLICATE_ID"),
        ("tasks[2].priority", "INVALID_PRIORITY"),
    ]


def test_duplicate_top_ids_report_both_problems() -> None:
    error = rejected(tree(spec("r", 0, "root_task"), spec("r", 0, "root_task")))
    assert fields(error) == [("tasks[1].id", "DUPLICATE_ID"), ("tasks", "INVALID_TREE_SHAPE")]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"name": ""}, "name", "NAME_REQUIRED"),
        ({"name": "   "}, "name", "NAME_REQUIRED"),
        ({"name": "x" * (MAX_NAME_LENGTH + 1), "executor": SLEEP}, "name", "NAME_TOO_LONG"),
        ({"priority": -1}, "priority", "INVALID_PRIORITY"),
        ({"max_attempts": -1}, "max_attempts", "INVALID_RETRY_POLICY"),
        ({"retry_backoff_ms": -1}, "retry_backoff", "INVALID_RETRY_POLICY"),
        ({"timeout_ms": 0}, "timeout", "INVALID_TIMEOUT"),
        ({"timeout_ms": -5}, "timeout", "INVALID_TIMEOUT"),
        ({"executor": "no_such_executor"}, "executor", "UNKNOWN_EXECUTOR"),
        ({"name": SYSTEM_INFO, "inputs": {"resource": "gpu"}}, "inputs", "INVALID_INPUTS"),
        ({"executor": SLEEP, "inputs": {"seconds": -1}}, "inputs", "INVALID_INPUTS"),
        (
            {"name": "folder", "dependencies": [("E", True)]},
            "dependencies",
            "GROUP_WITH_DEPENDENCIES",
        ),
        ({"dependencies": [("missing", True)]}, "dependencies[0].id", "DEPENDENCY_NOT_FOUND"),
        (
            {"dependencies": [("E", True), ("E", False)]},
            "dependencies[1].id",
            "DUPLICATE_DEPENDENCY",
        ),
        ({"user_id": "mallory"}, "user_id", "OWNER_MISMATCH"),
    ],
)
def test_single_violation(overrides: dict[str, Any], field: str, reason: str) -> None:
    specs = tree(spec("root", 0, "root_task", user_id="alice"), spec("t", 0, parent="root"))
    stored = by_id(existing("E", user="alice"))
    for key, value in overrides.items():
        setattr(specs[1], key, value)
    error = rejected(specs, stored)
    assert error.code is Code.INVALID_ARGUMENT
    assert error.reason == reason
    assert fields(error) == [(f"tasks[1].{field}", reason)]
    assert error.message.startswith(f"tasks[1].{field}: ")


def test_invalid_inputs_describe_the_schema_error() -> None:
    error = rejected([spec("task", 0, SYSTEM_INFO, inputs={"resource": "gpu"})])
    [violation] = error.violations
    assert violation.field == "tasks[0].inputs"
    assert "resource" in violation.description
    assert "gpu" in violation.description


def test_every_schema_error_of_inputs_is_listed() -> None:
    error = rejected([spec("task", 0, SLEEP, inputs={"seconds": "long", "fail": "yes"})])
    assert fields(error) == [("tasks[0].inputs", "INVALID_INPUTS")] * 2
    text = " ".join(v.description for v in error.violations)
    assert "seconds" in text
    assert "fail" in text


def test_dependency_on_another_owners_task_is_not_found() -> None:
    stored = by_id(existing("E", user="bob"))
    error = rejected([spec("task", 0, deps=["E"], user_id="alice")], stored)
    assert error.code is Code.INVALID_ARGUMENT
    assert fields(error) == [("tasks[0].dependencies[0].id", "DEPENDENCY_NOT_FOUND")]


def test_unknown_executor_is_not_validated_for_inputs() -> None:
    error = rejected([spec("task", 0, "x", executor="nope", inputs={"a": 1})])
    assert fields(error) == [("tasks[0].executor", "UNKNOWN_EXECUTOR")]


def test_all_violations_are_listed_and_reason_is_the_first() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, "", parent="root"),
            spec("b", 0, parent="root", priority=-3),
            spec("c", 0, "c", parent="root", executor="nope"),
            spec("d", 0, AGGREGATE, parent="root", deps=["a", "ghost"]),
            spec("e", 0, SYSTEM_INFO, parent="root", inputs={"resource": "gpu"}),
        )
    )
    assert error.code is Code.INVALID_ARGUMENT
    assert fields(error) == [
        ("tasks[1].name", "NAME_REQUIRED"),
        ("tasks[2].priority", "INVALID_PRIORITY"),
        ("tasks[3].executor", "UNKNOWN_EXECUTOR"),
        ("tasks[4].dependencies[1].id", "DEPENDENCY_NOT_FOUND"),
        ("tasks[5].inputs", "INVALID_INPUTS"),
    ]
    assert error.reason == "NAME_REQUIRED"
    for violation in error.violations:
        assert violation.field in error.message


# --------------------------------------------------------------------------- dependency cycles


def test_self_dependency() -> None:
    error = rejected(tree(spec("root", 0, "root_task"), spec("a", 0, parent="root", deps=["a"])))
    path = cycle_error(error)
    assert path == ["a", "a"]
    assert error.violations[0].field == "tasks[1].dependencies[0].id"


def test_two_cycle() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, parent="root", deps=["b"]),
            spec("b", 0, parent="root", deps=["a"]),
        )
    )
    path = cycle_error(error)
    assert_cycle(path, ["a", "b"])
    # The violation names the dependency of the cycle's first task.
    first = {"a": "tasks[1]", "b": "tasks[2]"}[path[0]]
    assert error.violations[0].field == f"{first}.dependencies[0].id"


def test_three_cycle_names_the_exact_dependency() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("x", 0, parent="root"),
            spec("a", 0, AGGREGATE, parent="root", deps=["x", "b"]),
            spec("b", 0, AGGREGATE, parent="root", deps=["x", "c"]),
            spec("c", 0, AGGREGATE, parent="root", deps=["x", "a"]),
        )
    )
    path = cycle_error(error)
    assert_cycle(path, ["a", "b", "c"])
    first = {"a": "tasks[2]", "b": "tasks[3]", "c": "tasks[4]"}[path[0]]
    assert error.violations[0].field == f"{first}.dependencies[1].id"


def test_task_depending_on_its_ancestor_group() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("g", 0, "group g", parent="root"),
            spec("t", 0, parent="g", deps=["root"]),
        )
    )
    path = cycle_error(error)
    assert_cycle(path, ["t", "root", "g"])
    # Named at the task that has the dependency, not at the group (which has none).
    assert path[0] == "t"
    assert error.violations[0].field == "tasks[2].dependencies[0].id"


def test_task_depending_on_a_group_whose_member_depends_on_it() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("t", 0, parent="root", deps=["g"]),
            spec("g", 0, "group g", parent="root"),
            spec("p", 0, parent="g"),
            spec("c", 0, parent="p", deps=["t"]),
        )
    )
    # g waits for its whole subtree, including c below the executable p.
    assert_cycle(cycle_error(error), ["t", "g", "p", "c"])


def test_cycle_is_checked_only_when_nothing_else_is_wrong() -> None:
    error = rejected(
        tree(
            spec("root", 0, "root_task"),
            spec("a", 0, parent="root", deps=["a"], priority=-1),
        )
    )
    assert fields(error) == [("tasks[1].priority", "INVALID_PRIORITY")]


def test_cycle_through_stored_tasks_when_attaching_under_existing_parent() -> None:
    # Stored: root group R > group G; a separate stored task D depends on R.
    stored = by_id(
        existing("R", group=True, children=("G",)),
        existing("G", root="R", group=True),
        existing("D", deps=("R",)),
    )
    error = rejected(tree(spec("n", 0, parent="G", deps=["D"])), stored)
    path = cycle_error(error)
    assert_cycle(path, ["n", "D", "R", "G"])
    assert path[0] == "n"
    assert error.violations[0].field == "tasks[0].dependencies[0].id"


def test_no_cycle_when_attaching_beside_the_stored_dependency() -> None:
    # Stored: root group R > {G, E}; the new task under G depends on its stored sibling E.
    stored = by_id(
        existing("R", group=True, children=("G", "E")),
        existing("G", root="R", group=True),
        existing("E", root="R"),
    )
    validate(tree(spec("n", 0, parent="G", deps=["E"])), stored)


# --------------------------------------------------------------------------- find_cycle


def resolved(specs: Sequence[TaskSpec]) -> list[ResolvedTask]:
    """ResolvedTasks built by hand (executor from the name: groups are not executor ids)."""
    return [
        ResolvedTask(
            spec=item,
            executor=item.name if item.name in REGISTRY else None,
            user_id=DEFAULT_OWNER,
            priority=DEFAULT_PRIORITY,
            parent_is_local=item.parent_id is not None,
        )
        for item in specs
    ]


def test_find_cycle_none_for_independent_tasks() -> None:
    assert find_cycle(resolved([spec("a", 0), spec("b", 0, deps=["a"])]), {}) is None


def test_find_cycle_empty_request() -> None:
    assert find_cycle([], by_id(existing("E"))) is None


def test_find_cycle_self_loop_is_closed() -> None:
    assert find_cycle(resolved([spec("a", 0, deps=["a"])]), {}) == ["a", "a"]


def test_find_cycle_two_cycle_path() -> None:
    cycle = find_cycle(resolved([spec("a", 0, deps=["b"]), spec("b", 0, deps=["a"])]), {})
    assert cycle is not None
    assert_cycle(cycle, ["a", "b"])


def test_find_cycle_ignores_dependencies_on_unknown_tasks() -> None:
    # Unknown ids are reported as DEPENDENCY_NOT_FOUND elsewhere; they cannot close a cycle.
    assert find_cycle(resolved([spec("a", 0, deps=["nowhere"])]), {}) is None


def test_find_cycle_optional_dependencies_count_too() -> None:
    # An optional dependency is still waited for (DESIGN section 3).
    specs = [spec("a", 0, deps=[("b", False)]), spec("b", 0, deps=[("a", False)])]
    cycle = find_cycle(resolved(specs), {})
    assert cycle is not None
    assert_cycle(cycle, ["a", "b"])


def test_find_cycle_executable_parent_does_not_wait_for_children() -> None:
    specs = [spec("p", 0), spec("c", 0, parent="p", deps=["p"])]
    assert find_cycle(resolved(specs), {}) is None


def test_find_cycle_group_waits_for_its_subtree() -> None:
    specs = [spec("g", 0, "folder"), spec("c", 0, parent="g", deps=["g"])]
    cycle = find_cycle(resolved(specs), {})
    assert cycle is not None
    assert_cycle(cycle, ["c", "g"])


def test_find_cycle_through_stored_dependency_chain() -> None:
    stored = by_id(
        existing("R", group=True, children=("G",)),
        existing("G", root="R", group=True, children=("old",)),
        existing("old", root="R"),
        existing("D2", deps=("R",)),
        existing("D1", deps=("D2",)),
    )
    specs = [spec("top", 0, "folder", parent="G"), spec("n", 0, parent="top", deps=["D1"])]
    cycle = find_cycle(resolved(specs), stored)
    assert cycle is not None
    assert_cycle(cycle, ["n", "D1", "D2", "R", "G", "top"])


def test_find_cycle_stored_dependency_outside_the_attach_chain() -> None:
    stored = by_id(
        existing("R", group=True, children=("G",)),
        existing("G", root="R", group=True),
        existing("X", group=True, children=("Y",)),
        existing("Y", root="X", deps=("Z",)),
        existing("Z"),
    )
    specs = [spec("n", 0, parent="G", deps=["X"])]
    assert find_cycle(resolved(specs), stored) is None


def test_find_cycle_long_chain_is_iterative() -> None:
    length = 5000
    specs = [spec(f"t{i}", 0, deps=[f"t{i + 1}"] if i + 1 < length else []) for i in range(length)]
    assert find_cycle(resolved(specs), {}) is None
    specs[-1].dependencies = [("t0", True)]
    cycle = find_cycle(resolved(specs), {})
    assert cycle is not None
    assert len(cycle) == length + 1
    assert_cycle(cycle, [f"t{i}" for i in range(length)])
