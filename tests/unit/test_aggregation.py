"""Subtree status and progress rules (DESIGN section 3): `StatusCounts`, `derived_status`,
`mean_progress`, and the SDK's `TaskTreeNode.calculate_status()/calculate_progress()`."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from taskgrove import Task, TaskTreeNode, statuses
from taskgrove.domain.aggregation import StatusCounts, derived_status, mean_progress

PENDING = statuses.PENDING
IN_PROGRESS = statuses.IN_PROGRESS
COMPLETED = statuses.COMPLETED
FAILED = statuses.FAILED
CANCELLED = statuses.CANCELLED

_ids = itertools.count()


def status_of(*task_statuses: str, execution_requested: bool = True) -> str:
    return derived_status(StatusCounts.of(task_statuses), execution_requested=execution_requested)


# --------------------------------------------------------------------- StatusCounts


def test_status_counts_of_counts_by_class() -> None:
    counts = StatusCounts.of([PENDING, PENDING, IN_PROGRESS, COMPLETED, FAILED, FAILED, CANCELLED])
    assert counts == StatusCounts(total=7, pending=2, terminal=4, failed=2, cancelled=1)


def test_status_counts_empty() -> None:
    assert StatusCounts.of([]) == StatusCounts()


def test_status_counts_add_and_remove_is_a_transition() -> None:
    counts = StatusCounts.of([PENDING, PENDING])
    # pending -> in_progress -> failed, as the engine applies it (old -1, new +1).
    counts.add(PENDING, -1)
    counts.add(IN_PROGRESS)
    assert counts == StatusCounts(total=2, pending=1)
    counts.add(IN_PROGRESS, -1)
    counts.add(FAILED)
    assert counts == StatusCounts(total=2, pending=1, terminal=1, failed=1)
    counts.add(FAILED, -1)
    counts.add(PENDING)  # retry
    assert counts == StatusCounts(total=2, pending=2)


# --------------------------------------------------------------------- derived_status


def test_nothing_executable_is_pending_until_executed_then_completed() -> None:
    assert status_of(execution_requested=False) == PENDING
    assert status_of(execution_requested=True) == COMPLETED


@pytest.mark.parametrize("execution_requested", [True, False])
def test_pending_until_something_starts(execution_requested: bool) -> None:
    assert status_of(PENDING, execution_requested=execution_requested) == PENDING
    assert status_of(PENDING, PENDING, PENDING) == PENDING


@pytest.mark.parametrize(
    "task_statuses",
    [
        (IN_PROGRESS,),
        (PENDING, IN_PROGRESS),
        (PENDING, COMPLETED),
        (PENDING, FAILED),
        (IN_PROGRESS, FAILED),
        (IN_PROGRESS, CANCELLED),
        (COMPLETED, COMPLETED, IN_PROGRESS),
        (FAILED, CANCELLED, COMPLETED, PENDING),
    ],
)
def test_in_progress_while_anything_is_not_terminal(task_statuses: tuple[str, ...]) -> None:
    assert status_of(*task_statuses) == IN_PROGRESS


@pytest.mark.parametrize(
    ("task_statuses", "expected"),
    [
        ((COMPLETED,), COMPLETED),
        ((COMPLETED, COMPLETED), COMPLETED),
        ((FAILED,), FAILED),
        ((CANCELLED,), CANCELLED),
        ((COMPLETED, FAILED), FAILED),
        ((COMPLETED, CANCELLED), CANCELLED),
        ((CANCELLED, FAILED), FAILED),
        ((FAILED, CANCELLED, COMPLETED), FAILED),
        ((CANCELLED, COMPLETED, CANCELLED), CANCELLED),
    ],
)
def test_terminal_precedence_failed_over_cancelled_over_completed(
    task_statuses: tuple[str, ...], expected: str
) -> None:
    # The order of the tasks does not matter.
    for order in itertools.permutations(task_statuses):
        assert status_of(*order) == expected


# --------------------------------------------------------------------- mean_progress


def test_mean_progress_empty_is_zero() -> None:
    assert mean_progress([]) == 0.0


def test_completed_counts_as_one_whatever_it_reported() -> None:
    assert mean_progress([(COMPLETED, 0.0)]) == 1.0
    assert mean_progress([(COMPLETED, 0.3)]) == 1.0


def test_others_count_their_last_reported_value() -> None:
    assert mean_progress([(PENDING, 0.0)]) == 0.0
    assert mean_progress([(IN_PROGRESS, 0.4)]) == pytest.approx(0.4)
    assert mean_progress([(FAILED, 0.7)]) == pytest.approx(0.7)
    assert mean_progress([(CANCELLED, 0.2)]) == pytest.approx(0.2)


def test_mean_progress_is_the_mean() -> None:
    items = [(COMPLETED, 0.0), (IN_PROGRESS, 0.5), (PENDING, 0.0), (FAILED, 0.5)]
    assert mean_progress(items) == pytest.approx((1.0 + 0.5 + 0.0 + 0.5) / 4)


def test_mean_progress_accepts_a_generator() -> None:
    assert mean_progress((s, p) for s, p in [(COMPLETED, 0), (PENDING, 0)]) == 0.5


# --------------------------------------------------------------------- TaskTreeNode


def task(
    status: str = PENDING,
    *,
    executor: str | None = "sleep_executor",
    progress: float = 0.0,
    execution_requested: bool = True,
    **fields: Any,
) -> Task:
    task_id = f"t{next(_ids)}"
    return Task(
        id=task_id,
        name=fields.pop("name", task_id),
        user_id="u",
        status=status,
        executor=executor,
        progress=progress,
        execution_requested=execution_requested,
        **fields,
    )


def group(status: str = PENDING, **fields: Any) -> Task:
    return task(status, executor=None, **fields)


def node(value: Task, *children: TaskTreeNode) -> TaskTreeNode:
    result = TaskTreeNode(value)
    for child in children:
        result.add_child(child)
    return result


def test_leaf_task_is_its_own_status_and_progress() -> None:
    assert node(task(IN_PROGRESS, progress=0.25)).calculate_status() == IN_PROGRESS
    assert node(task(IN_PROGRESS, progress=0.25)).calculate_progress() == pytest.approx(0.25)
    assert node(task(FAILED, progress=0.6)).calculate_status() == FAILED
    assert node(task(FAILED, progress=0.6)).calculate_progress() == pytest.approx(0.6)
    assert node(task(COMPLETED, progress=0.0)).calculate_progress() == 1.0


def test_empty_group() -> None:
    idle = node(group(execution_requested=False))
    assert idle.calculate_status() == PENDING
    assert idle.calculate_progress() == 0.0
    executed = node(group(execution_requested=True))
    assert executed.calculate_status() == COMPLETED
    assert executed.calculate_progress() == 1.0


def test_group_contributes_nothing_itself() -> None:
    # Whatever the group's own (stale) status and progress say, only the subtree counts.
    root = node(
        group(FAILED, progress=0.1),
        node(task(COMPLETED)),
        node(group(CANCELLED, progress=0.0), node(task(COMPLETED))),
    )
    assert root.calculate_status() == COMPLETED
    assert root.calculate_progress() == 1.0


def test_group_pending_until_something_starts() -> None:
    root = node(group(), node(task()), node(group(), node(task())))
    assert root.calculate_status() == PENDING
    assert root.calculate_progress() == 0.0


def test_group_in_progress_while_anything_is_not_terminal() -> None:
    root = node(group(), node(task(COMPLETED)), node(group(), node(task(PENDING))))
    assert root.calculate_status() == IN_PROGRESS
    assert root.calculate_progress() == pytest.approx(0.5)


def test_group_failed_if_any_descendant_failed_at_any_depth() -> None:
    deep_failure = node(
        group(),
        node(task(COMPLETED)),
        node(task(CANCELLED)),
        node(group(), node(group(), node(task(FAILED, progress=0.5)))),
    )
    assert deep_failure.calculate_status() == FAILED
    assert deep_failure.calculate_progress() == pytest.approx((1.0 + 0.0 + 0.5) / 3)


def test_group_cancelled_if_any_cancelled_and_none_failed() -> None:
    root = node(group(), node(task(COMPLETED)), node(group(), node(task(CANCELLED))))
    assert root.calculate_status() == CANCELLED


def test_group_completed_when_everything_completed() -> None:
    root = node(group(), node(task(COMPLETED)), node(group(), node(task(COMPLETED))))
    assert root.calculate_status() == COMPLETED
    assert root.calculate_progress() == 1.0


def test_executable_node_counts_itself_and_its_descendants() -> None:
    # The node itself failed while its children completed: the subtree failed.
    parent = node(task(FAILED, progress=0.2), node(task(COMPLETED)), node(task(COMPLETED)))
    assert parent.calculate_status() == FAILED
    assert parent.calculate_progress() == pytest.approx((0.2 + 1.0 + 1.0) / 3)
    # The node itself completed while a grandchild still runs.
    parent = node(task(COMPLETED), node(task(COMPLETED), node(task(IN_PROGRESS, progress=0.4))))
    assert parent.calculate_status() == IN_PROGRESS
    assert parent.calculate_progress() == pytest.approx((1.0 + 1.0 + 0.4) / 3)
    # The node itself has not started, but a child has.
    parent = node(task(PENDING), node(task(IN_PROGRESS)))
    assert parent.calculate_status() == IN_PROGRESS


def test_subtree_of_an_inner_node_ignores_siblings_and_ancestors() -> None:
    inner = node(group(), node(task(COMPLETED)))
    root = node(task(FAILED), inner, node(task(IN_PROGRESS, progress=0.3)))
    assert inner.calculate_status() == COMPLETED
    assert inner.calculate_progress() == 1.0
    assert root.calculate_status() == IN_PROGRESS
    assert root.calculate_progress() == pytest.approx((0.0 + 1.0 + 0.3) / 3)


def test_completed_counts_one_in_progress_even_if_reported_less() -> None:
    root = node(group(), node(task(COMPLETED, progress=0.1)), node(task(PENDING)))
    assert root.calculate_progress() == pytest.approx(0.5)


def test_deep_tree_does_not_recurse() -> None:
    # 5000 levels: walking is iterative, not recursive.
    root = node(group())
    current = root
    for _ in range(5000):
        current = current.add_child(node(task(COMPLETED)))
    assert root.calculate_status() == COMPLETED
    assert root.calculate_progress() == 1.0
