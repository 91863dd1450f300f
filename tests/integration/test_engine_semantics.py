"""Engine semantics (DESIGN sections 1, 3, 4) through a real in-process server and the SDK.

Test-only executors record what happens (start/end order, concurrency, contexts) in a
`Recorder`; they run inside the real server like any registered executor. Ordering is
asserted on the recorded order, never on durations.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from support.executors import Barrier
from support.trees import ROOT, group
from support.waiting import until, until_task, wait_finished
from taskgrove import AsyncClient, Task, statuses
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.engine.runner import CLAIM_WINDOW
from taskgrove_server.executors import (
    ExecutionContext,
    Executor,
    ExecutorError,
    ExecutorRegistry,
)

if TYPE_CHECKING:
    from conftest import ServerFactory

WAIT_S = 10.0


class Recorder:
    """Shared state of the test executors of one server."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        """("start" | "end", task name), in the order they happened."""
        self.running: dict[str, int] = defaultdict(int)
        self.max_running: dict[str, int] = defaultdict(int)
        self.total_running = 0
        self.max_total_running = 0
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.contexts: dict[str, ExecutionContext] = {}
        self.attempts: dict[str, list[int]] = defaultdict(list)

    def started(self, name: str) -> bool:
        return ("start", name) in self.events

    def starts(self) -> list[str]:
        return [name for kind, name in self.events if kind == "start"]

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))

    def executor(self, executor_id: str) -> Executor:
        """`inputs`: `signal` (gate set on start), `wait` (gates awaited), `progress`
        (reported after start), `seconds` (sleep), `fail`, `reason`, `result`."""

        async def run(context: ExecutionContext) -> Any:
            name = context.name
            self.contexts[name] = context
            self.attempts[name].append(context.attempt)
            self.events.append(("start", name))
            self.running[executor_id] += 1
            self.total_running += 1
            self.max_running[executor_id] = max(
                self.max_running[executor_id], self.running[executor_id]
            )
            self.max_total_running = max(self.max_total_running, self.total_running)
            inputs = context.inputs
            try:
                if "progress" in inputs:
                    context.report_progress(float(inputs["progress"]), "half way")
                if "signal" in inputs:
                    self.gates[inputs["signal"]].set()
                async with asyncio.timeout(WAIT_S):
                    for gate in inputs.get("wait", ()):
                        await self.gates[gate].wait()
                if inputs.get("seconds"):
                    await asyncio.sleep(float(inputs["seconds"]))
                if inputs.get("fail"):
                    raise ExecutorError(
                        f"{name} failed on request",
                        reason=str(inputs.get("reason", "EXECUTOR_ERROR")),
                        details={"name": name},
                    )
                return inputs.get("result", {"name": name})
            finally:
                self.running[executor_id] -= 1
                self.total_running -= 1
                self.events.append(("end", name))

        return Executor(id=executor_id, run=run, input_schema={"type": "object"})


def registry_for(recorder: Recorder) -> ExecutorRegistry:
    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(recorder.executor("rec"))
    registry.register(recorder.executor("rec_b"))

    async def flaky(context: ExecutionContext) -> Any:
        recorder.attempts[context.name].append(context.attempt)
        recorder.events.append(("start", context.name))
        recorder.events.append(("end", context.name))
        if context.attempt < int(context.inputs.get("succeed_on", 1_000)):
            raise RuntimeError(f"attempt {context.attempt} fails")
        return {"attempt": context.attempt}

    async def boom(context: ExecutionContext) -> Any:
        raise RuntimeError("boom")

    async def self_cancel(context: ExecutionContext) -> Any:
        # E.g. awaiting a future that someone else cancelled.
        raise asyncio.CancelledError()

    async def bad_result(context: ExecutionContext) -> Any:
        return {"not json": object()}

    for executor_id, run in (
        ("flaky", flaky),
        ("boom", boom),
        ("self_cancel", self_cancel),
        ("bad_result", bad_result),
    ):
        registry.register(Executor(id=executor_id, run=run))
    return registry


@dataclass
class Lab:
    server: TaskgroveServer
    client: AsyncClient
    rec: Recorder

    async def tree(self, specs: list[dict[str, Any]], *, execute: bool = True) -> dict[str, Task]:
        return await self.client.create_task_tree(specs, execute=execute)

    async def wait(self, task_id: str) -> Task:
        return await wait_finished(self.client, task_id, WAIT_S)

    async def get(self, task_id: str) -> Task:
        return await self.client.get_task(task_id)

    async def until(self, predicate: Callable[[], Any], limit_s: float = WAIT_S) -> None:
        await until(predicate, limit_s, poll_s=0.005)

    async def until_task(
        self, task_id: str, predicate: Callable[[Task], bool], limit_s: float = WAIT_S
    ) -> Task:
        return await until_task(self.client, task_id, predicate, limit_s)

    async def subtree(self, task_id: str) -> dict[str, Task]:
        """The subtree by task name."""
        return {task.name: task for task in await self.client.get_task_tree(task_id)}


async def start_lab(make_server: ServerFactory, **config: Any) -> Lab:
    recorder = Recorder()
    server = await make_server(registry=registry_for(recorder), **config)
    return Lab(server, make_server.client(server), recorder)


@pytest.fixture
async def lab(make_server: ServerFactory) -> Lab:
    return await start_lab(make_server)


def rec(name: str, parent: str | None = "root", **inputs: Any) -> dict[str, Any]:
    return {"id": name, "name": name, "executor": "rec", "parent_id": parent, "inputs": inputs}


# ------------------------------------------------------------------ tree links


async def test_parent_and_child_do_not_wait_for_each_other(lab: Lab) -> None:
    # Each waits (inside its executor) until the others have started: that finishes only if
    # parents run without waiting for their children and children without their parents.
    everyone = ["parent", "child", "grandchild"]
    created = await lab.tree(
        [
            rec("parent", None, signal="parent", wait=everyone),
            rec("child", "parent", signal="child", wait=everyone),
            rec("grandchild", "child", signal="grandchild", wait=everyone),
        ]
    )
    parent = await lab.wait(created["parent"].id)
    assert parent.status == statuses.COMPLETED
    tree = await lab.subtree(created["parent"].id)
    assert {name: task.status for name, task in tree.items()} == {
        "parent": statuses.COMPLETED,
        "child": statuses.COMPLETED,
        "grandchild": statuses.COMPLETED,
    }
    # All three ran at the same time.
    first_end = min(lab.rec.index("end", name) for name in tree)
    assert all(lab.rec.index("start", name) < first_end for name in tree)


async def test_executable_root_with_children_completes_whatever_the_order(lab: Lab) -> None:
    created = await lab.tree([rec("parent", None, seconds=0.1), rec("child", "parent")])
    await lab.wait(created["parent"].id)
    child = await lab.wait(created["child"].id)
    assert child.status == statuses.COMPLETED
    # The child did not wait for its slower parent.
    assert lab.rec.index("start", "child") < lab.rec.index("end", "parent")


# ------------------------------------------------------------------ dependencies


async def test_required_dependencies_order_execution(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            rec("a", seconds=0.05),
            {**rec("b"), "dependencies": ["a"]},
            {**rec("c", seconds=0.02), "dependencies": [{"id": "a", "required": True}]},
            {**rec("d"), "dependencies": ["b", "c"]},
            rec("free"),
        ]
    )
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.COMPLETED
    r = lab.rec
    assert r.index("end", "a") < r.index("start", "b")
    assert r.index("end", "a") < r.index("start", "c")
    assert r.index("end", "b") < r.index("start", "d")
    assert r.index("end", "c") < r.index("start", "d")
    tree = await lab.subtree(created["root"].id)
    assert tree["b"].start_time is not None and tree["a"].end_time is not None
    assert tree["b"].start_time >= tree["a"].end_time
    assert tree["d"].start_time >= max(tree["b"].end_time, tree["c"].end_time)  # type: ignore[type-var]


async def test_optional_dependency_is_waited_for_and_its_result_passed(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            {
                "id": "slow",
                "name": "sleep_executor",
                "parent_id": "root",
                "inputs": {"seconds": 0.3, "result": "from slow"},
            },
            {
                "id": "agg",
                "name": "aggregate_results_executor",
                "parent_id": "root",
                "dependencies": [{"id": "slow", "required": False}],
            },
        ]
    )
    await lab.wait(created["root"].id)
    slow = await lab.get(created["slow"].id)
    agg = await lab.get(created["agg"].id)
    assert agg.status == statuses.COMPLETED
    assert agg.result == {
        "results": {slow.id: {"slept_seconds": 0.3, "result": "from slow"}},
        "count": 1,
    }
    assert agg.start_time is not None and slow.end_time is not None
    assert agg.start_time >= slow.end_time


async def test_failed_optional_dependency_does_not_fail_the_dependent(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            {"id": "bad", "name": "sleep_executor", "parent_id": "root", "inputs": {"fail": True}},
            {"id": "good", "name": "sleep_executor", "parent_id": "root", "inputs": {}},
            {
                "id": "agg",
                "name": "aggregate_results_executor",
                "parent_id": "root",
                "dependencies": [{"id": "bad", "required": False}, "good"],
            },
        ]
    )
    root = await lab.wait(created["root"].id)
    agg = await lab.get(created["agg"].id)
    assert agg.status == statuses.COMPLETED
    assert agg.error is None
    # Only completed dependencies have results.
    assert agg.result == {
        "results": {created["good"].id: {"slept_seconds": 0.0, "result": None}},
        "count": 1,
    }
    assert root.status == statuses.FAILED  # `bad` failed below it


async def test_dependency_on_a_task_of_another_tree_waits_until_it_runs(lab: Lab) -> None:
    first = await lab.tree([ROOT, rec("t1", result={"value": 42})], execute=False)
    t1_id = first["t1"].id
    second = await lab.tree(
        [
            {"id": "root", "name": "second"},
            group("waiting"),
            {**rec("t2", "waiting"), "dependencies": [t1_id]},
            rec("independent"),
        ]
    )
    # The second tree runs what it can; t2 waits for the first tree, not yet executed.
    await lab.wait(second["independent"].id)
    await asyncio.sleep(0.2)
    assert not lab.rec.started("t2")
    assert (await lab.get(second["t2"].id)).status == statuses.PENDING
    assert (await lab.get(second["waiting"].id)).status == statuses.PENDING
    assert (await lab.get(second["root"].id)).status == statuses.IN_PROGRESS

    await lab.client.execute_task(first["root"].id)
    root2 = await lab.wait(second["root"].id)
    assert root2.status == statuses.COMPLETED
    assert lab.rec.index("end", "t1") < lab.rec.index("start", "t2")
    assert dict(lab.rec.contexts["t2"].dependency_results) == {t1_id: {"value": 42}}


async def test_dependency_on_a_finished_tree_gets_its_result(lab: Lab) -> None:
    first = await lab.tree([ROOT, rec("t1", result=[1, 2, 3])])
    await lab.wait(first["root"].id)
    second = await lab.tree(
        [
            {
                "id": "agg",
                "name": "aggregate_results_executor",
                "dependencies": [first["t1"].id],
            }
        ]
    )
    agg = await lab.wait(second["agg"].id)
    assert agg.status == statuses.COMPLETED
    assert agg.result == {"results": {first["t1"].id: [1, 2, 3]}, "count": 1}


async def test_dependency_on_a_group_waits_for_its_whole_subtree(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            group("g"),
            rec("g1", "g", seconds=0.05),
            group("h", "g"),
            rec("h1", "h", seconds=0.1),
            rec("h2", "h", wait=["release_h2"]),
            {**rec("after_g"), "dependencies": ["g"]},
        ]
    )
    await lab.until(lambda: lab.rec.started("h2"))
    await lab.until(lambda: ("end", "h1") in lab.rec.events and ("end", "g1") in lab.rec.events)
    await asyncio.sleep(0.2)
    assert not lab.rec.started("after_g")
    assert (await lab.get(created["g"].id)).status == statuses.IN_PROGRESS
    assert (await lab.get(created["after_g"].id)).status == statuses.PENDING
    lab.rec.gates["release_h2"].set()
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.COMPLETED
    start = lab.rec.index("start", "after_g")
    assert all(lab.rec.index("end", name) < start for name in ("g1", "h1", "h2"))


async def test_a_dependency_on_a_group_that_fails_fails_the_dependent(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            group("g"),
            rec("g_ok", "g"),
            rec("g_bad", "g", fail=True),
            {**rec("after_g"), "dependencies": ["g"]},
        ]
    )
    await lab.wait(created["root"].id)
    after = await lab.get(created["after_g"].id)
    assert after.status == statuses.FAILED
    assert after.error is not None and after.error.reason == "DEPENDENCY_FAILED"
    assert after.error.details["dependency_id"] == created["g"].id
    assert not lab.rec.started("after_g")


async def test_dependency_on_an_empty_group_is_met_once_it_is_executed(lab: Lab) -> None:
    created = await lab.tree([ROOT, group("empty"), {**rec("after"), "dependencies": ["empty"]}])
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.COMPLETED
    assert (await lab.get(created["empty"].id)).status == statuses.COMPLETED
    assert (await lab.get(created["after"].id)).status == statuses.COMPLETED


async def test_dependency_outside_the_executed_subtree_waits_until_it_is_executed(
    lab: Lab,
) -> None:
    # Same tree, but only the dependent's subtree is executed: the dependency is not
    # executing, so the dependent waits (it is neither run early nor failed).
    created = await lab.tree(
        [
            ROOT,
            group("left"),
            rec("dep", "left", result="left result"),
            group("right"),
            {**rec("dependent", "right"), "dependencies": ["dep"]},
            rec("sibling", "right"),
        ],
        execute=False,
    )
    await lab.client.execute_task(created["right"].id)
    await lab.wait(created["sibling"].id)
    await asyncio.sleep(0.2)
    assert not lab.rec.started("dep")
    assert not lab.rec.started("dependent")
    assert (await lab.get(created["dependent"].id)).status == statuses.PENDING
    assert (await lab.get(created["left"].id)).status == statuses.PENDING

    await lab.client.execute_task(created["left"].id)
    dependent = await lab.wait(created["dependent"].id)
    assert dependent.status == statuses.COMPLETED
    assert dict(lab.rec.contexts["dependent"].dependency_results) == {
        created["dep"].id: "left result"
    }
    assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED


# ------------------------------------------------------------------ failure cascade


async def test_failure_cascades_through_a_chain_and_nothing_stays_pending(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            {"id": "f", "name": "sleep_executor", "parent_id": "root", "inputs": {"fail": True}},
            {**rec("a"), "dependencies": ["f"]},
            {**rec("b"), "dependencies": ["a"]},
            group("sub"),
            {**rec("c", "sub"), "dependencies": ["b"]},
            {**rec("d"), "dependencies": ["c", "ok"]},
            rec("ok"),
            {**rec("optional"), "dependencies": [{"id": "f", "required": False}]},
        ]
    )
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.FAILED
    tree = await lab.subtree(created["root"].id)
    assert all(task.status in statuses.TERMINAL for task in tree.values()), {
        name: task.status for name, task in tree.items()
    }
    f = tree["sleep_executor"]
    assert f.status == statuses.FAILED
    assert f.error is not None and f.error.reason == "EXECUTOR_ERROR"
    for name, dependency in (("a", "f"), ("b", "a"), ("c", "b"), ("d", "c")):
        task = tree[name]
        assert task.status == statuses.FAILED, name
        assert task.error is not None
        assert task.error.reason == "DEPENDENCY_FAILED", name
        assert task.error.details["dependency_id"] == created[dependency].id
        assert created[dependency].id in task.error.message
        assert not lab.rec.started(name)
    assert tree["ok"].status == statuses.COMPLETED
    assert tree["optional"].status == statuses.COMPLETED
    assert tree["sub"].status == statuses.FAILED


async def test_failure_cascades_across_trees(lab: Lab) -> None:
    first = await lab.tree([ROOT, rec("f", fail=True)], execute=False)
    second = await lab.tree([{**rec("dependent", None), "dependencies": [first["f"].id]}])
    await lab.client.execute_task(first["root"].id)
    dependent = await lab.wait(second["dependent"].id)
    assert dependent.status == statuses.FAILED
    assert dependent.error is not None and dependent.error.reason == "DEPENDENCY_FAILED"
    assert dependent.error.details["dependency_id"] == first["f"].id


async def test_dependent_of_an_already_failed_task_fails_at_once(lab: Lab) -> None:
    first = await lab.tree([rec("f", None, fail=True)])
    await lab.wait(first["f"].id)
    second = await lab.tree([{**rec("dependent", None), "dependencies": [first["f"].id]}])
    dependent = await lab.wait(second["dependent"].id)
    assert dependent.status == statuses.FAILED
    assert dependent.error is not None and dependent.error.reason == "DEPENDENCY_FAILED"
    assert not lab.rec.started("dependent")


# ------------------------------------------------------------------ group status and progress


async def test_group_statuses_are_derived_from_their_subtrees(lab: Lab) -> None:
    specs = [
        ROOT,
        group("ok"),
        rec("ok1", "ok"),
        group("bad"),
        group("bad_inner", "bad"),
        rec("bad1", "bad_inner", fail=True),
        rec("bad2", "bad"),
        group("slow"),
        rec("slow1", "slow", wait=["release"]),
        group("empty"),
    ]
    created = await lab.tree(specs, execute=False)
    tree = await lab.subtree(created["root"].id)
    assert {task.status for task in tree.values()} == {statuses.PENDING}

    await lab.client.execute_task(created["root"].id)
    await lab.until(lambda: lab.rec.started("slow1"))
    await lab.until_task(created["bad"].id, lambda t: t.is_finished)
    await lab.until_task(created["ok"].id, lambda t: t.is_finished)
    tree = await lab.subtree(created["root"].id)
    assert tree["ok"].status == statuses.COMPLETED
    assert tree["bad_inner"].status == statuses.FAILED
    assert tree["bad"].status == statuses.FAILED
    assert tree["bad2"].status == statuses.COMPLETED
    assert tree["slow"].status == statuses.IN_PROGRESS
    assert tree["empty"].status == statuses.COMPLETED
    assert tree["root_task"].status == statuses.IN_PROGRESS

    lab.rec.gates["release"].set()
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.FAILED
    assert (await lab.get(created["slow"].id)).status == statuses.COMPLETED


async def test_group_progress_is_the_mean_of_its_subtree(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            group("g"),
            rec("half", "g", progress=0.5, wait=["release"]),
            rec("done", "g"),
            group("other"),
            rec("failed", "other", fail=True),
        ]
    )
    await lab.until_task(created["half"].id, lambda t: t.progress == pytest.approx(0.5))
    await lab.until_task(created["done"].id, lambda t: t.status == statuses.COMPLETED)
    await lab.until_task(created["failed"].id, lambda t: t.status == statuses.FAILED)
    g = await lab.get(created["g"].id)
    assert g.progress == pytest.approx((0.5 + 1.0) / 2)
    root = await lab.get(created["root"].id)
    assert root.progress == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert root.status == statuses.IN_PROGRESS
    tree = await lab.subtree(created["root"].id)
    assert tree["root_task"].progress == pytest.approx(root.progress)
    assert tree["g"].progress == pytest.approx(g.progress)

    lab.rec.gates["release"].set()
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.FAILED
    assert root.progress == pytest.approx(2 / 3)
    assert (await lab.get(created["g"].id)).progress == 1.0


# ------------------------------------------------------------------ scheduling


async def test_ready_tasks_start_in_priority_then_creation_order_across_trees(
    make_server: ServerFactory,
) -> None:
    lab = await start_lab(make_server, max_concurrency=1)
    blocker = await lab.tree([rec("blocker", None, wait=["go"])])
    await lab.until(lambda: lab.rec.started("blocker"))
    first = await lab.tree(
        [
            ROOT,
            {**rec("a1"), "priority": 2},
            {**rec("a2"), "priority": 3},
            {**rec("a3"), "priority": 1},
            {**rec("a4"), "priority": 0},
            rec("a5"),  # default priority: 2 (normal)
        ]
    )
    second = await lab.tree(
        [
            {"id": "root", "name": "second"},
            {**rec("b1"), "priority": 1},
            {**rec("b2"), "priority": 0},
            {**rec("b3"), "priority": 2},
        ]
    )
    assert (await lab.get(first["a2"].id)).status == statuses.PENDING
    lab.rec.gates["go"].set()
    await lab.wait(blocker["blocker"].id)
    await lab.wait(first["root"].id)
    await lab.wait(second["root"].id)
    assert lab.rec.starts() == ["blocker", "a4", "b2", "a3", "b1", "a1", "a5", "b3", "a2"]
    assert lab.rec.max_total_running == 1


async def test_global_concurrency_limit_is_never_exceeded(make_server: ServerFactory) -> None:
    lab = await start_lab(make_server, max_concurrency=3)
    trees = [
        await lab.tree([ROOT, *(rec(f"{prefix}{i}", wait=["go"]) for i in range(6))])
        for prefix in ("x", "y")
    ]
    await lab.until(lambda: lab.rec.total_running == 3)
    await asyncio.sleep(0.2)  # give a fourth start the chance to happen (it must not)
    assert lab.rec.total_running == 3
    assert lab.server.engine.running == 3
    lab.rec.gates["go"].set()
    for created in trees:
        assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED
    assert lab.rec.max_total_running == 3
    assert len(lab.rec.starts()) == 12


async def test_per_executor_limit(make_server: ServerFactory) -> None:
    lab = await start_lab(make_server, max_concurrency=10, executor_limits={"rec": 1})
    created = await lab.tree(
        [
            ROOT,
            *(rec(f"limited{i}", wait=["go"]) for i in range(4)),
            *({**rec(f"free{i}", wait=["go"]), "executor": "rec_b"} for i in range(3)),
        ]
    )
    await lab.until(lambda: lab.rec.running["rec_b"] == 3 and lab.rec.running["rec"] == 1)
    await asyncio.sleep(0.2)
    assert lab.rec.running["rec"] == 1
    lab.rec.gates["go"].set()
    assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED
    assert lab.rec.max_running["rec"] == 1
    assert lab.rec.max_running["rec_b"] == 3
    assert len(lab.rec.starts()) == 7


async def test_per_executor_limit_does_not_block_other_executors_behind_it(
    make_server: ServerFactory,
) -> None:
    # The limited executor's queue is more urgent, but other executors still get the
    # free slots of the global limit.
    lab = await start_lab(make_server, max_concurrency=2, executor_limits={"rec": 1})
    created = await lab.tree(
        [
            ROOT,
            *({**rec(f"limited{i}", wait=["go"]), "priority": 0} for i in range(3)),
            {**rec("other", wait=["go"]), "executor": "rec_b", "priority": 3},
        ]
    )
    await lab.until(lambda: lab.rec.started("other"))
    assert lab.rec.running["rec"] == 1
    lab.rec.gates["go"].set()
    assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED
    assert lab.rec.max_running["rec"] == 1


async def test_tasks_held_by_an_executor_limit_still_start_in_priority_order(
    make_server: ServerFactory,
) -> None:
    lab = await start_lab(make_server, max_concurrency=10, executor_limits={"rec": 1})
    blocker = await lab.tree([rec("blocker", None, wait=["go"])])
    await lab.until(lambda: lab.rec.started("blocker"))
    created = await lab.tree(
        [
            ROOT,
            {**rec("p3"), "priority": 3},
            {**rec("p0"), "priority": 0},
            {**rec("p2"), "priority": 2},
            {**rec("p1"), "priority": 1},
        ]
    )
    lab.rec.gates["go"].set()
    await lab.wait(blocker["blocker"].id)
    assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED
    assert lab.rec.starts() == ["blocker", "p0", "p1", "p2", "p3"]
    assert lab.rec.max_running["rec"] == 1


async def test_a_concurrency_limit_above_the_claim_window_is_filled(
    make_server: ServerFactory,
) -> None:
    # Claims go out CLAIM_WINDOW at a time; the next ones only once those commit. Each
    # task here finishes only once `limit` run at once, so nothing frees a slot: the
    # tree completes only if the window refills by itself after each commit.
    limit = 2 * CLAIM_WINDOW + 16
    barrier = Barrier(parties=limit, limit_s=WAIT_S)
    server = await make_server(registry=barrier.registry(), max_concurrency=limit)
    client = make_server.client(server)
    specs = [ROOT, *({**rec(f"t{i}"), "executor": "barrier"} for i in range(limit + 20))]
    created = await client.create_task_tree(specs, execute=True)
    root = await wait_finished(client, created["root"].id, WAIT_S)
    assert root.status == statuses.COMPLETED
    assert barrier.max_running == limit
    assert len(barrier.started) == limit + 20


async def test_priority_order_holds_across_claim_window_refills(
    make_server: ServerFactory,
) -> None:
    # More ready tasks than several windows, created in shuffled priority order: every
    # refill takes the most urgent of what is left, so they start in priority order.
    limit = 2 * CLAIM_WINDOW + 16
    lab = await start_lab(make_server, max_concurrency=limit)
    priorities = list(range(5 * CLAIM_WINDOW))
    random.Random(9).shuffle(priorities)
    created = await lab.tree([ROOT, *({**rec(f"p{p:03}"), "priority": p} for p in priorities)])
    assert (await lab.wait(created["root"].id)).status == statuses.COMPLETED
    assert lab.rec.starts() == [f"p{p:03}" for p in range(5 * CLAIM_WINDOW)]


# ------------------------------------------------------------------ attempt outcomes


async def test_executor_exception_fails_with_executor_error(lab: Lab) -> None:
    created = await lab.tree([{"id": "t", "name": "boom", "executor": "boom"}])
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.error is not None
    assert task.error.reason == "EXECUTOR_ERROR"
    assert "boom" in task.error.message
    assert task.error.details["type"] == "RuntimeError"
    assert "RuntimeError: boom" in task.error.details["traceback"]
    assert task.attempt == 1
    assert task.result is None


async def test_executor_error_keeps_its_reason_and_details(lab: Lab) -> None:
    created = await lab.tree([rec("t", None, fail=True, reason="QUOTA_EXCEEDED")])
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.error is not None
    assert task.error.reason == "QUOTA_EXCEEDED"
    assert task.error.details == {"name": "t"}


async def test_timeout_fails_the_task_with_reason_timeout(lab: Lab) -> None:
    created = await lab.tree(
        [{"id": "t", "name": "sleep_executor", "inputs": {"seconds": 5}, "timeout": 0.2}]
    )
    assert created["t"].timeout == timedelta(milliseconds=200)
    async with asyncio.timeout(4):  # well before the 5 s sleep would end
        task = await lab.client.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.error is not None and task.error.reason == "TIMEOUT"


async def test_result_that_is_not_json_fails_the_task(lab: Lab) -> None:
    created = await lab.tree([{"id": "t", "name": "bad_result", "executor": "bad_result"}])
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.error is not None and task.error.reason == "INVALID_RESULT"


async def test_executor_raising_cancelled_error_does_not_leave_the_task_running(
    lab: Lab,
) -> None:
    # An executor whose own await was cancelled by someone else (not the server) ends
    # with CancelledError. The task must still end (DESIGN 3: nothing is left forever).
    created = await lab.tree(
        [
            ROOT,
            {"id": "t", "name": "self_cancel", "executor": "self_cancel", "parent_id": "root"},
            {**rec("after"), "dependencies": ["t"]},
        ]
    )
    try:
        task = await lab.until_task(created["t"].id, lambda t: t.is_finished, limit_s=3)
    except TimeoutError:
        task = await lab.get(created["t"].id)
    assert task.status == statuses.FAILED, f"task still {task.status} after 3 s"
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.FAILED
    assert lab.server.engine.running == 0


async def test_retries_until_success(lab: Lab) -> None:
    created = await lab.tree(
        [
            ROOT,
            {
                "id": "flaky",
                "name": "flaky",
                "executor": "flaky",
                "parent_id": "root",
                "inputs": {"succeed_on": 3},
                "max_attempts": 3,
                "retry_backoff": 0.02,
            },
            {**rec("after"), "dependencies": ["flaky"]},
        ]
    )
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.COMPLETED
    flaky = await lab.get(created["flaky"].id)
    assert flaky.status == statuses.COMPLETED
    assert flaky.attempt == 3
    assert flaky.max_attempts == 3
    assert flaky.result == {"attempt": 3}
    assert flaky.error is None
    assert lab.rec.attempts["flaky"] == [1, 2, 3]
    # The dependent waited through the retries and ran once, after the success.
    assert lab.rec.starts().count("after") == 1
    assert lab.rec.index("start", "after") > len(lab.rec.events) - 3
    assert dict(lab.rec.contexts["after"].dependency_results) == {flaky.id: {"attempt": 3}}


async def test_retries_exhausted_fail_with_the_last_error(lab: Lab) -> None:
    created = await lab.tree(
        [
            {
                "id": "flaky",
                "name": "flaky",
                "executor": "flaky",
                "max_attempts": 2,
                "retry_backoff": 0.02,
            }
        ]
    )
    task = await lab.wait(created["flaky"].id)
    assert task.status == statuses.FAILED
    assert task.attempt == 2
    assert lab.rec.attempts["flaky"] == [1, 2]
    assert task.error is not None and task.error.reason == "EXECUTOR_ERROR"
    assert "attempt 2 fails" in task.error.message


async def test_timeouts_are_retried_too(lab: Lab) -> None:
    created = await lab.tree(
        [
            {
                "id": "t",
                "name": "sleep_executor",
                "inputs": {"seconds": 5},
                "timeout": 0.1,
                "max_attempts": 2,
                "retry_backoff": 0.02,
            }
        ]
    )
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.attempt == 2
    assert task.error is not None and task.error.reason == "TIMEOUT"


# ------------------------------------------------------------------ executor context


async def test_executor_context_carries_inputs_params_metadata_and_dependency_results(
    lab: Lab,
) -> None:
    created = await lab.tree(
        [
            {**ROOT, "user_id": "alice"},
            rec("a", result={"a": 1}),
            rec("b", result="bee"),
            {
                **rec("c", result=None),
                "params": {"mode": "fast", "depth": 3},
                "dependencies": ["a", {"id": "b", "required": False}],
            },
        ]
    )
    await lab.wait(created["root"].id)
    context = lab.rec.contexts["c"]
    c = await lab.get(created["c"].id)
    assert context.task_id == c.id
    assert context.root_id == created["root"].id == c.root_id
    assert context.name == "c"
    assert context.user_id == "alice"
    assert context.attempt == 1
    assert dict(context.params) == {"mode": "fast", "depth": 3}
    assert dict(context.inputs) == {"result": None}
    assert dict(context.dependency_results) == {
        created["a"].id: {"a": 1},
        created["b"].id: "bee",
    }
    # Stored inputs are never overwritten with dependency results.
    assert c.inputs == {"result": None}
    assert c.status == statuses.COMPLETED


async def test_dependency_free_tree_of_200_tasks_completes(lab: Lab) -> None:
    specs: list[dict[str, Any]] = [ROOT]
    specs += [
        {"id": f"t{i}", "name": "sleep_executor", "parent_id": "root", "inputs": {"seconds": 0}}
        for i in range(200)
    ]
    created = await lab.tree(specs)
    root = await lab.wait(created["root"].id)
    assert root.status == statuses.COMPLETED
    assert root.progress == 1.0
    tree = await lab.client.get_task_tree(created["root"].id)
    assert len(tree) == 201
    assert all(task.status == statuses.COMPLETED for task in tree)
    assert all(task.attempt == 1 for task in tree if not task.is_group)
    assert lab.server.engine.running == 0


async def test_cross_tree_dependents_racing_their_dependency_s_end(lab: Lab) -> None:
    # Dependents in another tree start executing while their dependency is finishing (its
    # tree is being unloaded, its end not yet committed). Every dependent must still run
    # and complete: none may wait forever or fail as if the dependency did not exist.
    done = await lab.tree([rec("done", None)])
    await lab.wait(done["done"].id)
    dependents: list[str] = []
    for i in range(40):
        first = await lab.tree(
            [{"id": "t", "name": "sleep_executor", "inputs": {"seconds": 0}}], execute=False
        )
        dep = first["t"].id

        async def dependent(deps: list[str], delay: float) -> str:
            await asyncio.sleep(delay)
            created = await lab.tree(
                [{"id": "d", "name": "aggregate_results_executor", "dependencies": deps}]
            )
            return created["d"].id

        delay = 0.001 * (i % 10)
        _, alone, with_other = await asyncio.gather(
            lab.client.execute_task(dep),
            dependent([dep], delay),
            dependent([dep, done["done"].id], delay),
        )
        dependents += [alone, with_other]
    problems = {}
    try:
        async with asyncio.timeout(3):
            for task_id in dependents:
                await lab.client.wait(task_id)
    except TimeoutError:
        pass
    for task_id in dependents:
        task = await lab.get(task_id)
        if task.status != statuses.COMPLETED:
            problems[task_id] = (task.status, task.error and task.error.reason)
    assert not problems, f"{len(problems)} of {len(dependents)} dependents: {problems}"
