"""The CLI's tree state (snapshot + events, incremental aggregates) and its bounded views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from rich.tree import Tree
from taskgrove import Task, TaskError, TaskEvent
from taskgrove.cli.render import (
    ViewOptions,
    depth_for_width,
    live_view,
    pick_children,
    render_tree,
)
from taskgrove.cli.state import TreeState
from taskgrove.cli.summary import RunSummary
from taskgrove.domain import statuses

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def task(
    task_id: str, parent: str | None, *, group: bool = False, status: str = statuses.PENDING
) -> Task:
    return Task(
        id=task_id,
        name=f"name-{task_id}",
        user_id="u",
        status=status,
        parent_id=parent,
        executor=None if group else "sleep_executor",
    )


def event(
    sequence: int,
    task_id: str,
    status: str,
    *,
    kind: str = "status_changed",
    progress: float = 0.0,
    previous: str | None = None,
    error: TaskError | None = None,
    parent: str | None = "root",
    group: bool = False,
    attempt: int = 1,
) -> TaskEvent:
    return TaskEvent(
        sequence=sequence,
        task_id=task_id,
        root_id="root",
        user_id="u",
        parent_id=parent,
        name=f"name-{task_id}",
        type=kind,
        status=status,
        previous_status=previous,
        progress=progress,
        progress_message="",
        error=error,
        attempt=attempt,
        is_group=group,
        time=T0 + timedelta(seconds=sequence),
    )


def small_tree() -> TreeState:
    state = TreeState()
    # Children before their parents: the state links them once the parent arrives.
    state.load(
        [
            task("a1", "a"),
            task("a2", "a"),
            task("a", "root", group=True),
            task("b", "root"),
            task("root", None, group=True),
        ],
        sequence=10,
    )
    return state


def test_snapshot_links_children_and_counts_executable_tasks() -> None:
    state = small_tree()
    root = state.tasks["root"]
    assert [node.id for node in state.roots()] == ["root"]
    assert [node.id for node in root.walk()] == ["root", "a", "a1", "a2", "b"]
    assert root.total == 3
    assert state.tasks["a"].total == 2
    assert root.child_statuses[statuses.PENDING] == 2
    assert state.sequence == 10


def test_events_update_counts_and_progress_along_the_ancestors() -> None:
    state = small_tree()
    state.apply(event(11, "a1", statuses.IN_PROGRESS, parent="a", previous=statuses.PENDING))
    state.apply(event(12, "a1", statuses.IN_PROGRESS, kind="progress", progress=0.5, parent="a"))
    root, group = state.tasks["root"], state.tasks["a"]
    assert group.counts[statuses.IN_PROGRESS] == 1
    assert group.subtree_progress == 0.25
    assert root.subtree_progress == 0.5 / 3
    state.apply(event(13, "a1", statuses.COMPLETED, parent="a", progress=0.5))
    state.apply(event(14, "b", statuses.FAILED, error=TaskError("EXECUTOR_ERROR", "boom")))
    assert root.counts[statuses.COMPLETED] == 1
    assert root.counts[statuses.FAILED] == 1
    assert root.counts[statuses.IN_PROGRESS] == 0
    assert group.subtree_progress == 0.5
    assert state.tasks["b"].error == TaskError("EXECUTOR_ERROR", "boom")
    a1 = state.tasks["a1"]
    assert a1.start_time == T0 + timedelta(seconds=11)
    assert a1.end_time == T0 + timedelta(seconds=13)
    assert state.sequence == 14


def test_group_status_events_and_new_and_deleted_tasks() -> None:
    state = small_tree()
    state.apply(event(11, "a", statuses.IN_PROGRESS, group=True, previous=statuses.PENDING))
    assert state.tasks["root"].child_statuses[statuses.IN_PROGRESS] == 1
    state.apply(event(12, "c", statuses.PENDING, kind="created", parent="a"))
    assert state.tasks["a"].total == 3
    assert state.tasks["root"].total == 4
    state.apply(event(13, "a", statuses.PENDING, kind="deleted", group=True))
    assert set(state.tasks) == {"root", "b"}
    assert state.tasks["root"].total == 1
    assert state.tasks["root"].child_statuses[statuses.IN_PROGRESS] == 0


def test_dependency_named_in_an_error_is_shown_with_its_name() -> None:
    state = small_tree()
    error = TaskError("DEPENDENCY_FAILED", "required dependency a1 failed", {"dependency_id": "a1"})
    node = state.apply(event(11, "b", statuses.FAILED, error=error))
    assert node is not None
    assert state.error_message(node) == "required dependency 'name-a1' failed"


def big_group(children: int) -> TreeState:
    state = TreeState()
    tasks = [task("root", None, group=True)]
    tasks += [task(f"t{index}", "root") for index in range(children)]
    state.load(tasks)
    state.apply(event(1, "t5", statuses.IN_PROGRESS, previous=statuses.PENDING))
    state.apply(event(2, "t90", statuses.FAILED, previous=statuses.IN_PROGRESS))
    for index in range(100, 150):
        state.apply(event(3 + index, f"t{index}", statuses.COMPLETED))
    return state


def rendered(renderable: object) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    text = console.export_text()
    console.file.close()
    return text


def test_a_crowded_group_shows_the_interesting_children_and_summarises_the_rest() -> None:
    state = big_group(10_000)
    root = state.tasks["root"]
    shown = pick_children(root, 20)
    assert [child.id for child in shown][:3] == ["t0", "t1", "t2"]
    assert {"t5", "t90"} <= {child.id for child in shown}
    assert len(shown) == 20
    text = rendered(render_tree(state, root, ViewOptions(max_children=20)))
    lines = text.splitlines()
    assert len(lines) == 22
    assert "… 9980 more (50 completed, 9930 pending)" in lines[-1]


def test_the_row_budget_bounds_the_whole_view() -> None:
    state = TreeState()
    tasks = [task("root", None, group=True)]
    for group in range(50):
        tasks.append(task(f"g{group}", "root", group=True))
        tasks += [task(f"g{group}-{index}", f"g{group}") for index in range(30)]
    state.load(tasks)
    view = live_view(state, "root", 1.5, ViewOptions(max_children=20, max_rows=60))
    lines = rendered(view).splitlines()
    assert len(lines) < 80
    assert "(1500 tasks)" in lines[0]
    assert any("more (" in line for line in lines)


def test_all_children_when_limit_is_zero() -> None:
    state = big_group(200)
    text = rendered(render_tree(state, state.tasks["root"], ViewOptions(max_children=0)))
    assert len(text.splitlines()) == 201


def chain(length: int) -> TreeState:
    """A root group and `length - 1` levels below it, one task per level."""
    state = TreeState()
    tasks = [task("c0", None, group=True)]
    tasks += [task(f"c{i}", f"c{i - 1}", group=i < length - 1) for i in range(1, length)]
    state.load(tasks)
    return state


def test_a_deep_chain_is_cut_where_the_width_runs_out() -> None:
    state = chain(1000)
    depth = depth_for_width(120)
    text = rendered(render_tree(state, state.tasks["c0"], ViewOptions(max_depth=depth)))
    lines = text.splitlines()
    assert len(lines) == depth + 2  # the top, `depth` levels, the marker
    assert f"name-c{depth} " in lines[-2]
    assert lines[-1].strip() == f"└── … {999 - depth} more levels (use --depth / --json)"
    assert max(len(line) for line in lines) <= 120
    narrow = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    narrow.print(render_tree(state, state.tasks["c0"], ViewOptions(max_depth=depth_for_width(60))))
    assert "more levels" in narrow.export_text()
    narrow.file.close()
    # Without a depth limit the view is built all the same (rich then runs out of width).
    unbounded = render_tree(state, state.tasks["c0"], ViewOptions(max_rows=0, max_depth=0))
    assert sum(1 for _ in _walk(unbounded)) == 1000


def _walk(tree: Tree) -> list[Tree]:
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.children)
    return found


def test_the_marker_counts_the_deepest_branch_below_the_cut() -> None:
    state = TreeState()
    tasks = [task("root", None, group=True), task("a", "root", group=True)]
    tasks += [task("a1", "a", group=True), task("a2", "a1"), task("b1", "a")]
    state.load(tasks)
    text = rendered(render_tree(state, state.tasks["root"], ViewOptions(max_depth=1)))
    assert text.splitlines()[-1].strip() == "└── … 2 more levels (use --depth / --json)"
    full = rendered(render_tree(state, state.tasks["root"], ViewOptions(max_depth=3)))
    assert "more levels" not in full
    assert "name-a2" in full


# --------------------------------------------------------------------------- summary

TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "executor.py", line {line}, in step{line}\n    step{line + 1}()\n'
    for line in range(1, 20)
)


def test_the_summary_shows_failure_details_results_and_the_files_ids() -> None:
    state = small_tree()
    crash = TaskError("EXECUTOR_ERROR", "KeyError: 'missing'", {
        "type": "KeyError",
        "traceback": TRACEBACK + "KeyError: 'missing'\n",
    })  # fmt: skip
    failed = TaskError("COMMAND_FAILED", "sh exited with 3", {
        "exit_code": 3, "stdout": "out\n", "stderr": "".join(f"line {n}\n" for n in range(9)),
    })  # fmt: skip
    state.apply(event(11, "a1", statuses.FAILED, error=crash, parent="a"))
    state.apply(event(12, "a2", statuses.FAILED, error=failed, parent="a"))
    state.apply(event(13, "b", statuses.COMPLETED))
    ids = {"top": "root", "grp": "a", "x": "a1", "y": "a2", "fin": "b"}
    stored = [
        Task(id="a1", name="name-a1", user_id="u", status=statuses.FAILED, executor="e"),
        Task(
            id="b",
            name="name-b",
            user_id="u",
            status=statuses.COMPLETED,
            executor="aggregate_results_executor",
            result={"results": {"a1": 1, "zz": [{"a2": 2}]}, "count": 2},
        ),
    ]
    summary = RunSummary.of(state, "root", 1.0, task_ids=ids, stored=stored)
    text = rendered(summary.render())
    # The last lines of the traceback (where it was raised) and of stderr.
    assert "traceback (last lines):" in text
    assert "KeyError: 'missing'" in text.split("traceback (last lines):")[1]
    assert "step1()" not in text and "step19()" in text
    assert [line.strip() for line in text.splitlines() if "stderr:" in line] == [
        f"stderr: line {n}" for n in range(4, 9)
    ]
    # The final result, its dependency keys as the file's ids.
    assert '"x": 1' in text and '"y": 2' in text
    assert "name-b [fin] b" in text
    assert [line.split() for line in text.split("ids:")[1].splitlines()[1:6]] == [
        [ref, task_id] for ref, task_id in ids.items()
    ]
    data = summary.to_json()
    assert data["task_ids"] == ids
    assert data["results"] == {"fin": stored[1].result}
    assert {f["ref"]: f["details"] for f in data["failures"]}["y"]["stdout"] == "out\n"


def test_a_pending_task_names_the_dependencies_it_waits_for() -> None:
    state = TreeState()
    deps = [{"id": f"d{index}", "required": True} for index in range(5)]
    state.load(
        [
            task("root", None, group=True),
            *(task(f"d{index}", "root") for index in range(5)),
            Task(
                id="w",
                name="waiter",
                user_id="u",
                status=statuses.PENDING,
                parent_id="root",
                executor="e",
                dependencies=deps,
            ),
        ]
    )
    view = rendered(render_tree(state, state.tasks["root"], ViewOptions()))
    assert "waiter" in view and "waits for name-d0, name-d1, name-d2 +2" in view
    for index in range(4):
        state.apply(event(20 + index, f"d{index}", statuses.COMPLETED))
    view = rendered(render_tree(state, state.tasks["root"], ViewOptions()))
    assert "waits for name-d4" in view and "name-d3," not in view
    state.apply(event(30, "d4", statuses.COMPLETED))
    state.apply(event(31, "w", statuses.IN_PROGRESS))
    assert "waits for" not in rendered(render_tree(state, state.tasks["root"], ViewOptions()))


def test_a_task_waiting_out_its_retry_backoff_says_so() -> None:
    state = small_tree()
    state.apply(event(11, "b", statuses.IN_PROGRESS))
    error = TaskError("EXECUTOR_ERROR", "nope", {})
    state.apply(event(12, "b", statuses.PENDING, error=error))
    view = rendered(render_tree(state, state.tasks["root"], ViewOptions()))
    assert "↻ retrying after attempt 1: EXECUTOR_ERROR: nope" in view
    state.apply(event(13, "b", statuses.IN_PROGRESS))
    assert "retrying" not in rendered(render_tree(state, state.tasks["root"], ViewOptions()))


def test_a_bar_with_failures_below_is_red() -> None:
    from taskgrove.cli.render import progress_bar

    assert progress_bar(1.0, failed=True).finished_style == "red"
    assert progress_bar(0.5, failed=True).complete_style == "red"
    assert progress_bar(1.0).finished_style != "red"


def test_the_live_view_says_when_the_server_is_unreachable() -> None:
    state = small_tree()
    options = ViewOptions(max_children=20, max_rows=50, max_depth=8, bar_width=10)
    away = rendered(live_view(state, "root", 1.0, options, reconnecting=3))
    assert away.splitlines()[0] == "server unreachable, reconnecting (3)…"
    back = rendered(live_view(state, "root", 1.0, options))
    assert "unreachable" not in back
    empty = live_view(TreeState(), "root", 0, options, reconnecting=1)
    assert "reconnecting (1)" in rendered(empty)


def test_progress_never_moves_backwards_within_an_attempt() -> None:
    state = small_tree()
    group, root = state.tasks["a"], state.tasks["root"]
    state.apply(event(11, "a1", statuses.IN_PROGRESS, parent="a", previous=statuses.PENDING))
    state.apply(event(12, "a1", statuses.IN_PROGRESS, kind="progress", progress=0.8, parent="a"))
    state.apply(event(13, "a2", statuses.IN_PROGRESS, kind="progress", progress=0.4, parent="a"))
    assert group.subtree_progress == pytest.approx(0.6)
    shown = [root.subtree_progress]
    # A lower report, then an end event without progress: nothing goes back.
    state.apply(event(14, "a1", statuses.IN_PROGRESS, kind="progress", progress=0.2, parent="a"))
    shown.append(root.subtree_progress)
    state.apply(event(15, "a2", statuses.FAILED, parent="a", progress=0.0))
    shown.append(root.subtree_progress)
    state.apply(event(16, "a1", statuses.COMPLETED, parent="a", progress=0.0))
    shown.append(root.subtree_progress)
    assert shown == sorted(shown)
    assert state.tasks["a1"].progress == 0.8
    assert group.subtree_progress == pytest.approx((1.0 + 0.4) / 2)


def test_a_retry_lets_a_tasks_progress_start_again() -> None:
    state = small_tree()
    b = state.tasks["b"]
    state.apply(event(11, "b", statuses.IN_PROGRESS, previous=statuses.PENDING))
    state.apply(event(12, "b", statuses.IN_PROGRESS, kind="progress", progress=0.7))
    # Automatic retry: back to pending (backoff), then a new attempt from 0.
    state.apply(event(13, "b", statuses.PENDING, previous=statuses.IN_PROGRESS))
    assert b.progress == 0.0
    state.apply(event(14, "b", statuses.IN_PROGRESS, kind="progress", progress=0.1, attempt=2))
    assert b.progress == 0.1
    state.apply(event(15, "b", statuses.FAILED, progress=0.1, attempt=2))
    # Asked for (RetryTask): out of a final status.
    state.apply(event(16, "b", statuses.IN_PROGRESS, progress=0.0, attempt=2))
    assert b.progress == 0.0
    state.apply(event(17, "b", statuses.IN_PROGRESS, kind="progress", progress=0.3, attempt=3))
    assert b.progress == 0.3


def test_the_live_views_percentages_do_not_fall_back() -> None:
    state = small_tree()
    options = ViewOptions(max_children=20, max_rows=50)
    state.apply(event(11, "b", statuses.IN_PROGRESS, kind="progress", progress=0.9))
    before = rendered(live_view(state, "root", 1.0, options))
    state.apply(event(12, "b", statuses.IN_PROGRESS, kind="progress", progress=0.3))
    after = rendered(live_view(state, "root", 1.0, options))
    assert "30%" in before.splitlines()[0]  # 0.9 of 3 tasks
    assert after.splitlines()[0] == before.splitlines()[0]
    assert "name-b b  90%" in after


def test_the_summary_counts_what_only_followed_a_dependency_apart_and_lists_it_last() -> None:
    state = small_tree()
    own = TaskError("EXECUTOR_ERROR", "RuntimeError: boom", {})
    upstream = TaskError("DEPENDENCY_FAILED", "required dependency 'a1' failed", {})
    state.apply(event(11, "a2", statuses.FAILED, error=upstream, parent="a"))
    state.apply(event(12, "a1", statuses.FAILED, error=own, parent="a"))
    state.apply(event(13, "b", statuses.CANCELLED))
    text = rendered(RunSummary.of(state, "root", 1.0).render())
    assert "problems (1 failed, 1 cancelled, 1 because of a dependency):" in text
    listed = text.split("problems")[1]
    assert listed.index("RuntimeError: boom") < listed.index("DEPENDENCY_FAILED")


def test_a_group_that_ended_failed_fills_its_bar_only_with_what_completed() -> None:
    from taskgrove.cli.render import bar_fraction

    state = small_tree()
    state.apply(event(11, "a1", statuses.COMPLETED, parent="a"))
    state.apply(event(12, "a2", statuses.IN_PROGRESS, parent="a"))
    state.apply(event(13, "a2", statuses.IN_PROGRESS, kind="progress", progress=0.9, parent="a"))
    state.apply(event(14, "a2", statuses.FAILED, parent="a"))
    state.apply(event(15, "a", statuses.FAILED, parent="root"))
    group = state.tasks["a"]
    assert group.subtree_progress > 0.9  # the failed task had come far
    assert bar_fraction(group) == 0.5  # but only one of the two completed
    state.apply(event(16, "b", statuses.IN_PROGRESS))
    assert bar_fraction(state.tasks["root"]) == state.tasks["root"].subtree_progress  # running
