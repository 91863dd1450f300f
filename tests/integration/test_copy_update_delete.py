"""CopyTaskTree, UpdateTask and DeleteTask (DESIGN 4, 6)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from support.events import history
from support.status_details import raw
from support.trees import group, ids
from support.waiting import WAIT_S, until_task, wait_finished
from taskgrove import (
    AbortedError,
    AsyncClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Task,
    statuses,
)
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

if TYPE_CHECKING:
    from conftest import ServerFactory


@dataclass
class Lab:
    client: AsyncClient = None  # type: ignore[assignment]
    failing: set[str] = field(default_factory=set)
    """Names of the `probe` tasks that fail."""
    started: list[str] = field(default_factory=list)
    """Names of the test executors' tasks, in the order they started."""
    gates: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    async def until(self, task_id: str, predicate: Callable[[Task], bool]) -> Task:
        return await until_task(self.client, task_id, predicate)

    async def wait(self, task_id: str) -> Task:
        return await wait_finished(self.client, task_id)

    async def tree(self, task_id: str) -> dict[str, Task]:
        """The subtree by name."""
        return {t.name: t for t in await self.client.get_task_tree(task_id)}


def registry_for(lab: Lab) -> ExecutorRegistry:
    async def probe(context: ExecutionContext) -> Any:
        """Returns the ids of the dependency results it got; fails when its name is in
        `lab.failing`."""
        lab.started.append(context.name)
        if context.name in lab.failing:
            raise RuntimeError(f"{context.name} fails")
        return {"deps": sorted(context.dependency_results)}

    async def gated(context: ExecutionContext) -> Any:
        lab.started.append(context.name)
        async with asyncio.timeout(WAIT_S):
            await lab.gates[context.name].wait()
        return "opened"

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="probe", run=probe))
    registry.register(Executor(id="gated", run=gated))
    return registry


async def start_lab(make_server: ServerFactory, **config: Any) -> Lab:
    lab = Lab()
    instance = await make_server(registry=registry_for(lab), **config)
    lab.client = make_server.client(instance)
    return lab


@pytest.fixture
async def lab(make_server: ServerFactory) -> Lab:
    return await start_lab(make_server)


def task(name: str, executor: str = "probe", parent: str | None = "root", **fields: Any) -> dict:
    return {"id": name, "name": name, "executor": executor, "parent_id": parent, **fields}


def dep_ids(t: Task) -> list[str]:
    return [d["id"] for d in t.dependencies]


async def raw_task(client: AsyncClient, task_id: str) -> task_pb2.Task:
    return await raw(client.stub.GetTask(task_service_pb2.GetTaskRequest(id=task_id)))


async def all_ids(client: AsyncClient) -> set[str]:
    return {t.id async for t in client.list_tasks()}


# ------------------------------------------------------------------ CopyTaskTree


async def source_tree(lab: Lab) -> tuple[dict[str, str], str]:
    ext = await lab.client.create_task_tree(
        [{"id": "eroot", "name": "ext_tree", "user_id": "alice"}, task("ext", parent="eroot")]
    )
    ext_id = ext["ext"].id
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task", "user_id": "alice"},
            task(
                "a",
                executor="sleep_executor",
                inputs={"seconds": 0, "result": "A"},
                params={"k": "v"},
                priority=1,
                max_attempts=3,
                retry_backoff=0.25,
                timeout=10,
            ),
            task("a_child", parent="a"),
            group("g"),
            task("b", parent="g", dependencies=["a"]),
            task("c", parent="g", dependencies=["b", {"id": ext_id, "required": False}]),
        ]
    )
    return ids(created), ext_id


async def test_copy_keeps_the_structure_with_new_ids(lab: Lab) -> None:
    tid, ext_id = await source_tree(lab)
    before = await lab.client.get_task_tree(tid["root"])

    copies = await lab.client.copy_task_tree(tid["root"])

    originals = {t.id: t for t in before}
    assert set(copies) == set(originals)
    copy_ids = {c.id for c in copies.values()}
    assert len(copy_ids) == len(originals)
    assert not copy_ids & set(originals)
    top = copies[tid["root"]]
    assert top.parent_id is None
    for original_id, copy in copies.items():
        original = originals[original_id]
        assert copy.original_task_id == original_id
        assert copy.root_id == top.id
        assert copy.name == original.name
        assert copy.user_id == original.user_id == "alice"
        assert copy.executor == original.executor
        assert copy.priority == original.priority
        assert copy.inputs == original.inputs
        assert copy.params == original.params
        assert copy.max_attempts == original.max_attempts
        assert copy.timeout == original.timeout
        assert copy.retry_backoff == original.retry_backoff
        assert copy.has_children == original.has_children
        assert copy.status == statuses.PENDING
        assert copy.attempt == 0
        assert not copy.execution_requested
        if original.parent_id is not None:
            assert copy.parent_id == copies[original.parent_id].id
    # Dependencies inside the copied subtree point at the copies; outside ones are kept.
    assert dep_ids(copies[tid["b"]]) == [copies[tid["a"]].id]
    assert copies[tid["c"]].dependencies == [
        {"id": copies[tid["b"]].id, "required": True},
        {"id": ext_id, "required": False},
    ]
    a_copy = await raw_task(lab.client, copies[tid["a"]].id)
    assert a_copy.retry_backoff.ToTimedelta() == timedelta(seconds=0.25)
    # Stored as a new tree: GetTaskTree of the copy matches, the copy is a root, the
    # originals are untouched.
    stored = {t.id: t for t in await lab.client.get_task_tree(top.id)}
    assert stored.keys() == copy_ids
    for copy in copies.values():
        assert stored[copy.id].original_task_id == copy.original_task_id
        assert stored[copy.id].parent_id == copy.parent_id
        assert stored[copy.id].dependencies == copy.dependencies
    assert top.id in {t.id async for t in lab.client.list_tasks(roots_only=True)}
    assert await lab.client.get_task_tree(tid["root"]) == before


async def test_copy_of_a_subtree_keeps_dependencies_leaving_it(lab: Lab) -> None:
    tid, ext_id = await source_tree(lab)
    copies = await lab.client.copy_task_tree(tid["g"])
    assert set(copies) == {tid["g"], tid["b"], tid["c"]}
    top = copies[tid["g"]]
    assert top.parent_id is None and top.root_id == top.id
    assert dep_ids(copies[tid["b"]]) == [tid["a"]]  # outside the copy: the original
    assert dep_ids(copies[tid["c"]]) == [copies[tid["b"]].id, ext_id]


async def test_copy_only_unfinished_copies_what_did_not_complete(lab: Lab) -> None:
    lab.failing.add("b")
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("a"),
            group("g1"),
            task("a2", parent="g1"),
            group("g2"),
            task("b", parent="g2"),
            task("c", parent="g2", dependencies=["a", "b"]),
            task("e", parent="g2"),
            task("h", dependencies=["c"]),
        ],
        execute=True,
    )
    tid = ids(created)
    assert (await lab.wait(tid["root"])).status == statuses.FAILED
    tree = await lab.tree(tid["root"])
    assert {n: t.status for n, t in tree.items() if not t.is_group} == {
        "a": statuses.COMPLETED,
        "a2": statuses.COMPLETED,
        "b": statuses.FAILED,
        "c": statuses.FAILED,
        "e": statuses.COMPLETED,
        "h": statuses.FAILED,
    }

    copies = await lab.client.copy_task_tree(tid["root"], only_unfinished=True)

    # Not completed: b, c, h; with the groups above them (root, g2). Not a, g1, a2, e.
    assert set(copies) == {tid[n] for n in ("root", "g2", "b", "c", "h")}
    by_name = {c.name: c for c in copies.values()}
    assert by_name["root_task"].parent_id is None
    assert by_name["g2"].parent_id == by_name["root_task"].id
    assert by_name["b"].parent_id == by_name["g2"].id
    assert by_name["h"].parent_id == by_name["root_task"].id
    # The dependency on the completed original stays on it (its result is there).
    assert dep_ids(by_name["c"]) == [tid["a"], by_name["b"].id]
    assert dep_ids(by_name["h"]) == [by_name["c"].id]
    for copy in copies.values():
        assert copy.status == statuses.PENDING and not copy.execution_requested
    await asyncio.sleep(0.05)
    assert (await lab.client.get_task(by_name["b"].id)).status == statuses.PENDING

    # Fixed: a copy executed at once completes, using the original a's result.
    lab.failing.clear()
    rerun = await lab.client.copy_task_tree(tid["root"], only_unfinished=True, execute=True)
    rerun_by_name = {c.name: c for c in rerun.values()}
    top = await lab.wait(rerun_by_name["root_task"].id)
    assert top.status == statuses.COMPLETED
    c = await lab.client.get_task(rerun_by_name["c"].id)
    assert c.result == {"deps": sorted([tid["a"], rerun_by_name["b"].id])}
    assert c.original_task_id == tid["c"]
    # The originals are untouched.
    assert (await lab.client.get_task(tid["root"])).status == statuses.FAILED
    assert (await lab.client.get_task(tid["b"])).attempt == 1


async def test_copy_with_execute_runs_the_copy(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [{"id": "root", "name": "root_task"}, task("x"), task("y", dependencies=["x"])],
        execute=True,
    )
    tid = ids(created)
    await lab.wait(tid["root"])
    lab.started.clear()
    copies = await lab.client.copy_task_tree(tid["root"], execute=True)
    top = await lab.wait(copies[tid["root"]].id)
    assert top.status == statuses.COMPLETED
    assert sorted(lab.started) == ["x", "y"]
    y = await lab.client.get_task(copies[tid["y"]].id)
    assert y.result == {"deps": [copies[tid["x"]].id]}
    assert y.attempt == 1


async def test_copy_of_an_unknown_task_is_not_found(lab: Lab) -> None:
    with pytest.raises(NotFoundError):
        await lab.client.copy_task_tree("no-such-task")


# ------------------------------------------------------------------ UpdateTask


async def pending_task(lab: Lab) -> dict[str, str]:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("t", executor="sleep_executor", inputs={"seconds": 0}),
            task("other", executor="sleep_executor"),
        ]
    )
    return ids(created)


async def test_update_each_updatable_field(lab: Lab) -> None:
    tid = await pending_task(lab)
    t = tid["t"]
    etags = [(await lab.client.get_task(t)).etag]

    async def check(**fields: Any) -> Task:
        updated = await lab.client.update_task(t, **fields)
        assert updated == await lab.client.get_task(t)
        assert updated.etag not in etags
        etags.append(updated.etag)
        return updated

    assert (await check(name="renamed")).name == "renamed"
    assert (await check(priority=0)).priority == 0
    assert dep_ids(await check(dependencies=[tid["other"]])) == [tid["other"]]
    assert (await check(inputs={"seconds": 0.5})).inputs == {"seconds": 0.5}
    assert (await check(params={"x": [1, 2]})).params == {"x": [1, 2]}
    assert (await check(max_attempts=4)).max_attempts == 4
    await check(retry_backoff=0.75)
    assert (await raw_task(lab.client, t)).retry_backoff.ToTimedelta() == timedelta(seconds=0.75)
    assert (await check(timeout=3)).timeout == timedelta(seconds=3)
    final = await lab.client.get_task(t)
    assert (final.name, final.priority, final.max_attempts) == ("renamed", 0, 4)
    assert final.inputs == {"seconds": 0.5}
    assert final.status == statuses.PENDING

    # The updated task runs with its new settings.
    await lab.client.execute_task(tid["root"])
    done = await lab.wait(t)
    assert done.status == statuses.COMPLETED
    assert done.result == {"slept_seconds": 0.5, "result": None}


async def test_update_changes_only_the_fields_in_the_mask(lab: Lab) -> None:
    tid = await pending_task(lab)
    before = await lab.client.get_task(tid["t"])
    request = task_service_pb2.UpdateTaskRequest(
        task=task_pb2.Task(id=tid["t"], name="ignored", priority=0, max_attempts=9)
    )
    request.update_mask.paths.append("priority")
    updated = await raw(lab.client.stub.UpdateTask(request))
    assert updated.priority == 0
    after = await lab.client.get_task(tid["t"])
    assert (after.name, after.max_attempts, after.inputs) == (
        before.name,
        before.max_attempts,
        before.inputs,
    )


@pytest.mark.parametrize("path", ["status", "parent_id", "executor", "user_id", "id", "result"])
async def test_update_of_a_field_that_is_not_updatable(lab: Lab, path: str) -> None:
    tid = await pending_task(lab)
    before = await lab.client.get_task(tid["t"])
    request = task_service_pb2.UpdateTaskRequest(task=task_pb2.Task(id=tid["t"]))
    request.update_mask.paths.append(path)
    with pytest.raises(InvalidArgumentError) as caught:
        await raw(lab.client.stub.UpdateTask(request))
    assert caught.value.reason == "FIELD_NOT_UPDATABLE"
    assert [v.reason for v in caught.value.field_violations] == ["FIELD_NOT_UPDATABLE"]
    assert await lab.client.get_task(tid["t"]) == before


async def test_update_of_a_task_that_is_not_pending(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("done"),
            task("running", executor="gated"),
            task("cancelled_later", executor="gated"),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["done"], lambda t: t.status == statuses.COMPLETED)
    await lab.until(tid["running"], lambda t: t.status == statuses.IN_PROGRESS)
    await lab.client.cancel_task(tid["cancelled_later"])
    for name in ("done", "running", "cancelled_later"):
        before = await lab.client.get_task(tid[name])
        with pytest.raises(FailedPreconditionError) as caught:
            await lab.client.update_task(tid[name], priority=0)
        assert caught.value.reason == "TASK_NOT_PENDING", name
        assert await lab.client.get_task(tid[name]) == before
    lab.gates["running"].set()


async def test_update_with_etag(lab: Lab) -> None:
    tid = await pending_task(lab)
    first = await lab.client.get_task(tid["t"])
    updated = await lab.client.update_task(tid["t"], etag=first.etag, priority=1)
    assert updated.priority == 1
    assert updated.etag != first.etag
    # The old etag is stale now.
    with pytest.raises(AbortedError) as caught:
        await lab.client.update_task(tid["t"], etag=first.etag, priority=3)
    assert caught.value.reason == "ETAG_MISMATCH"
    with pytest.raises(AbortedError):
        await lab.client.update_task(tid["t"], etag="not-an-etag", priority=3)
    assert await lab.client.get_task(tid["t"]) == updated
    again = await lab.client.update_task(tid["t"], etag=updated.etag, priority=3)
    assert again.priority == 3 and again.etag not in (first.etag, updated.etag)


async def test_update_creating_a_dependency_cycle_is_refused(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("a", dependencies=["b"]),
            task("b"),
            group("g"),
            task("in_g", parent="g"),
        ]
    )
    tid = ids(created)
    other = await lab.client.create_task_tree(
        [{"id": "oroot", "name": "other"}, task("x", parent="oroot", dependencies=[tid["a"]])]
    )
    x = other["x"].id
    snapshot = await lab.client.get_task_tree(tid["root"])
    cases = [
        (tid["b"], [tid["a"]]),  # a -> b -> a
        (tid["a"], [tid["a"]]),  # itself
        (tid["b"], [x]),  # b -> x -> a -> b, across trees
        (tid["in_g"], [tid["g"]]),  # a group waits for its subtree, in_g included
    ]
    for task_id, deps in cases:
        with pytest.raises(InvalidArgumentError) as caught:
            await lab.client.update_task(task_id, dependencies=deps)
        assert caught.value.reason == "DEPENDENCY_CYCLE", (task_id, deps)
    assert await lab.client.get_task_tree(tid["root"]) == snapshot
    assert dep_ids(await lab.client.get_task(x)) == [tid["a"]]


async def test_update_with_an_unknown_dependency_or_invalid_inputs(lab: Lab) -> None:
    tid = await pending_task(lab)
    before = await lab.client.get_task(tid["t"])
    with pytest.raises(InvalidArgumentError) as caught:
        await lab.client.update_task(tid["t"], dependencies=["no-such-task"])
    assert caught.value.reason == "DEPENDENCY_NOT_FOUND"
    with pytest.raises(InvalidArgumentError) as caught:
        await lab.client.update_task(tid["t"], inputs={"seconds": "long"})
    assert caught.value.reason == "INVALID_INPUTS"
    with pytest.raises(InvalidArgumentError) as caught:
        await lab.client.update_task(tid["t"], inputs={"unknown_key": 1})
    assert caught.value.reason == "INVALID_INPUTS"
    assert await lab.client.get_task(tid["t"]) == before
    with pytest.raises(NotFoundError):
        await lab.client.update_task("no-such-task", priority=1)


async def queued_behind_a_blocker(make_server: ServerFactory) -> tuple[Lab, dict[str, str]]:
    """A max_concurrency=1 server running `blocker`, with q1, q2, q3 (priority 2) queued."""
    lab = await start_lab(make_server, max_concurrency=1)
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("blocker", executor="gated", priority=0),
            task("q1"),
            task("q2"),
            task("q3"),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["blocker"], lambda t: t.status == statuses.IN_PROGRESS)
    for position, name in enumerate(["q1", "q2", "q3"], start=1):
        assert (await lab.client.explain_task(tid[name])).queue_position == position
    return lab, tid


async def queue_positions(lab: Lab, tid: dict[str, str]) -> dict[str, int]:
    return {n: (await lab.client.explain_task(tid[n])).queue_position for n in ("q1", "q2", "q3")}


async def test_raising_the_priority_of_a_queued_task_runs_it_earlier(
    make_server: ServerFactory,
) -> None:
    lab, tid = await queued_behind_a_blocker(make_server)
    await lab.client.update_task(tid["q2"], priority=0)
    positions = await queue_positions(lab, tid)
    lab.gates["blocker"].set()
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert lab.started == ["blocker", "q2", "q1", "q3"]
    # ExplainTask counts each queued task once, at its current priority.
    assert positions == {"q2": 1, "q1": 2, "q3": 3}


async def test_lowering_the_priority_of_a_queued_task_runs_it_later(
    make_server: ServerFactory,
) -> None:
    lab, tid = await queued_behind_a_blocker(make_server)
    await lab.client.update_task(tid["q1"], priority=3)
    assert (await lab.client.get_task(tid["q1"])).priority == 3
    positions = await queue_positions(lab, tid)
    lab.gates["blocker"].set()
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert lab.started == ["blocker", "q2", "q3", "q1"]
    assert positions == {"q2": 1, "q3": 2, "q1": 3}


async def test_update_of_dependencies_to_a_failed_task_fails_the_waiting_task(lab: Lab) -> None:
    lab.failing.add("broken")
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("blocker", executor="gated"),
            task("waiter", dependencies=["blocker"]),
            task("broken"),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["broken"], lambda t: t.status == statuses.FAILED)
    await lab.client.update_task(tid["waiter"], dependencies=[tid["broken"]])
    waiter = await lab.wait(tid["waiter"])
    assert waiter.status == statuses.FAILED
    assert waiter.error is not None and waiter.error.reason == "DEPENDENCY_FAILED"
    assert waiter.error.details.get("dependency_id") == tid["broken"]
    lab.gates["blocker"].set()
    assert (await lab.wait(tid["root"])).status == statuses.FAILED
    assert "waiter" not in lab.started


async def test_update_of_dependencies_of_a_waiting_task(lab: Lab) -> None:
    """A task waiting for a dependency that is replaced by a finished one runs."""
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("blocker", executor="gated"),
            task("waiter", dependencies=["blocker"]),
            task("quick"),
        ]
    )
    tid = ids(created)
    await lab.client.execute_task(tid["root"])
    await lab.until(tid["quick"], lambda t: t.status == statuses.COMPLETED)
    assert (await lab.client.get_task(tid["waiter"])).status == statuses.PENDING
    await lab.client.update_task(tid["waiter"], dependencies=[tid["quick"]])
    waiter = await lab.wait(tid["waiter"])
    assert waiter.status == statuses.COMPLETED
    assert waiter.result == {"deps": [tid["quick"]]}
    lab.gates["blocker"].set()
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED


# ------------------------------------------------------------------ DeleteTask


async def test_delete_pending_subtree(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            group("g"),
            task("x", parent="g", dependencies=["y"]),  # inside the subtree: no obstacle
            task("y", parent="g"),
            task("z"),
        ]
    )
    tid = ids(created)
    last_sequence = max(e.sequence for e in await history(lab.client))

    deleted = await lab.client.delete_task(tid["g"])

    assert deleted[0] == tid["g"]  # parents first
    assert sorted(deleted) == sorted([tid["g"], tid["x"], tid["y"]])
    remaining = await all_ids(lab.client)
    assert remaining == {tid["root"], tid["z"]}
    for name in ("g", "x", "y"):
        with pytest.raises(NotFoundError):
            await lab.client.get_task(tid[name])
    assert (await lab.client.get_task(tid["root"])).has_children
    assert [t.name for t in await lab.client.get_task_tree(tid["root"])] == ["root_task", "z"]
    later = [e for e in await history(lab.client) if e.sequence > last_sequence]
    assert sorted(e.task_id for e in later if e.type == "deleted") == sorted(deleted)

    # The last child deleted: the parent has no children any more.
    assert await lab.client.delete_task(tid["z"]) == [tid["z"]]
    assert not (await lab.client.get_task(tid["root"])).has_children
    # A whole tree.
    assert await lab.client.delete_task(tid["root"]) == [tid["root"]]
    assert await all_ids(lab.client) == set()
    with pytest.raises(NotFoundError):
        await lab.client.delete_task(tid["root"])


async def test_delete_a_waiting_task_of_an_executing_tree(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("blocker", executor="gated"),
            task("waiter", dependencies=["blocker"]),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["blocker"], lambda t: t.status == statuses.IN_PROGRESS)
    assert await lab.client.delete_task(tid["waiter"]) == [tid["waiter"]]
    lab.gates["blocker"].set()
    root = await lab.wait(tid["root"])
    assert root.status == statuses.COMPLETED
    assert lab.started == ["blocker"]


async def test_delete_a_queued_task(make_server: ServerFactory) -> None:
    lab, tid = await queued_behind_a_blocker(make_server)
    assert await lab.client.delete_task(tid["q1"]) == [tid["q1"]]
    assert (await lab.client.explain_task(tid["q2"])).queue_position == 1
    lab.gates["blocker"].set()
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert lab.started == ["blocker", "q2", "q3"]


async def test_delete_of_a_subtree_with_a_running_or_finished_task_is_refused(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            task("done"),
            task("running", executor="gated"),
            task("waiting", dependencies=["running"]),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["done"], lambda t: t.status == statuses.COMPLETED)
    await lab.until(tid["running"], lambda t: t.status == statuses.IN_PROGRESS)
    before = await lab.client.get_task_tree(tid["root"])
    with pytest.raises(FailedPreconditionError) as caught:
        await lab.client.delete_task(tid["root"])
    assert caught.value.reason == "TASK_NOT_PENDING"
    assert set(caught.value.metadata["task_ids"].split(",")) == {tid["done"], tid["running"]}
    for name in ("done", "running"):
        with pytest.raises(FailedPreconditionError) as caught:
            await lab.client.delete_task(tid[name])
        assert caught.value.reason == "TASK_NOT_PENDING"
    assert await all_ids(lab.client) == {t.id for t in before}
    lab.gates["running"].set()
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED


async def test_delete_of_a_subtree_something_else_depends_on_is_refused(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            group("g"),
            task("y", parent="g"),
            task("sibling", dependencies=["y"]),
        ]
    )
    tid = ids(created)
    other = await lab.client.create_task_tree(
        [
            {"id": "oroot", "name": "other"},
            task("on_y", parent="oroot", dependencies=[tid["y"]]),
            task("on_g", parent="oroot", dependencies=[tid["g"]]),
        ]
    )
    outside = {tid["sibling"], other["on_y"].id, other["on_g"].id}
    everything = await all_ids(lab.client)
    with pytest.raises(FailedPreconditionError) as caught:
        await lab.client.delete_task(tid["g"])
    assert caught.value.reason == "HAS_DEPENDENTS"
    assert set(caught.value.metadata["dependent_ids"].split(",")) == outside
    for dependent in outside:
        assert dependent in caught.value.message
    assert await all_ids(lab.client) == everything

    # Once the dependents are gone, the subtree can be deleted.
    await lab.client.delete_task(other["oroot"].id)
    await lab.client.delete_task(tid["sibling"])
    assert sorted(await lab.client.delete_task(tid["g"])) == sorted([tid["g"], tid["y"]])


async def test_delete_with_etag(lab: Lab) -> None:
    tid = await pending_task(lab)
    t = await lab.client.get_task(tid["t"])
    updated = await lab.client.update_task(tid["t"], priority=0)
    with pytest.raises(AbortedError) as caught:
        await lab.client.delete_task(tid["t"], etag=t.etag)
    assert caught.value.reason == "ETAG_MISMATCH"
    assert await lab.client.get_task(tid["t"]) == updated
    assert await lab.client.delete_task(tid["t"], etag=updated.etag) == [tid["t"]]
    with pytest.raises(NotFoundError):
        await lab.client.get_task(tid["t"])


async def test_a_task_waiting_to_retry_cannot_be_updated_and_says_why(client: AsyncClient) -> None:
    task = await client.create_task(
        name="flaky",
        executor="sleep_executor",
        inputs={"seconds": 0, "fail": True},
        max_attempts=2,
        retry_backoff=timedelta(seconds=60),
    )
    await client.execute_task(task.id)
    waiting = await until_task(client, task.id, lambda t: t.attempt == 1 and t.status == "pending")
    with pytest.raises(FailedPreconditionError) as caught:
        await client.update_task(task.id, priority=1)
    assert caught.value.reason == "TASK_NOT_PENDING"
    assert "waiting to retry after attempt 1" in str(caught.value)
    assert (await client.get_task(task.id)).priority == waiting.priority
    await client.cancel_task(task.id)
