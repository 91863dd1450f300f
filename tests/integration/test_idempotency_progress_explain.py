"""Idempotent mutating RPCs (`request_id`), progress reporting, and ExplainTask (DESIGN 3-6).

A repeated `request_id` returns the first answer exactly (the stored response, not a fresh
one) and does not act a second time.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.events import history
from support.status_details import raw
from support.trees import ids, sleeper
from support.waiting import WAIT_S, wait_finished
from support.waiting import until_task as until
from taskgrove import AsyncClient, InvalidArgumentError, NotFoundError, Task, statuses
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

if TYPE_CHECKING:
    from conftest import ServerFactory


# ------------------------------------------------------------------ helpers


def failing(name: str, parent: str | None = "root", **fields: Any) -> dict:
    return {**sleeper(name, parent=parent, **fields), "inputs": {"fail": True}}


async def all_tasks(client: AsyncClient) -> list[Task]:
    return [t async for t in client.list_tasks()]


def tree_request(
    request_id: str, *, execute: bool = False
) -> task_service_pb2.CreateTaskTreeRequest:
    return task_service_pb2.CreateTaskTreeRequest(
        tasks=[
            task_pb2.Task(id="root", name="root_task"),
            task_pb2.Task(id="a", name="a", executor="sleep_executor", parent_id="root"),
            task_pb2.Task(id="b", name="b", executor="sleep_executor", parent_id="root"),
        ],
        execute=execute,
        request_id=request_id,
    )


@pytest.fixture
async def client(make_server: ServerFactory) -> AsyncClient:
    """Overrides conftest's `client`: a fresh server of the factory."""
    return make_server.client(await make_server())


# ------------------------------------------------------------------ idempotency


async def test_create_task_tree_repeated_creates_one_tree(client: AsyncClient) -> None:
    first = await raw(client.stub.CreateTaskTree(tree_request("tree-1")))
    again = await raw(client.stub.CreateTaskTree(tree_request("tree-1")))
    assert again == first
    assert len(await all_tasks(client)) == 3
    # Without a request_id the same request creates another tree.
    await raw(client.stub.CreateTaskTree(tree_request("")))
    assert len(await all_tasks(client)) == 6


async def test_concurrent_repeats_create_one_tree(client: AsyncClient) -> None:
    replies = await asyncio.gather(
        *(raw(client.stub.CreateTaskTree(tree_request("tree-concurrent"))) for _ in range(5))
    )
    assert all(reply == replies[0] for reply in replies)
    assert {t.id for t in await all_tasks(client)} == set(replies[0].task_ids.values())


async def test_create_task_repeated_creates_one_task(client: AsyncClient) -> None:
    first = await client.create_task(name="one", executor="sleep_executor", request_id="ct-1")
    again = await client.create_task(name="one", executor="sleep_executor", request_id="ct-1")
    assert again == first
    assert [t.id for t in await all_tasks(client)] == [first.id]


async def test_execute_task_repeated_returns_the_first_answer(client: AsyncClient) -> None:
    created = await raw(client.stub.CreateTaskTree(tree_request("")))
    root_id = created.task_ids["root"]
    request = task_service_pb2.ExecuteTaskRequest(id=root_id, request_id="ex-1")
    first = await raw(client.stub.ExecuteTask(request))
    assert first.scheduled_count == 2
    await wait_finished(client, root_id)
    again = await raw(client.stub.ExecuteTask(request))
    assert again == first  # the stored answer, not "0 scheduled"
    fresh = await raw(client.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=root_id)))
    assert fresh.scheduled_count == 0
    for task in await all_tasks(client):
        if not task.is_group:
            assert task.attempt == 1


async def test_cancel_task_repeated_returns_the_first_answer(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("long", 30)], execute=True
    )
    tid = ids(created)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)
    assert await client.cancel_task(tid["root"], request_id="cancel-1") == [tid["long"]]
    assert await client.cancel_task(tid["root"], request_id="cancel-1") == [tid["long"]]
    assert await client.cancel_task(tid["root"]) == []
    cancelled = [
        e
        for e in await history(client, task_id=tid["long"])
        if e.type == "status_changed" and e.status == statuses.CANCELLED
    ]
    assert len(cancelled) == 1


async def test_retry_task_repeated_retries_once(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, failing("f")], execute=True
    )
    tid = ids(created)
    assert (await wait_finished(client, tid["root"])).status == statuses.FAILED
    assert await client.retry_task(tid["f"], request_id="retry-1") == [tid["f"]]
    failed_again = await until(
        client, tid["f"], lambda t: t.status == statuses.FAILED and t.attempt == 2
    )
    assert await client.retry_task(tid["f"], request_id="retry-1") == [tid["f"]]
    await asyncio.sleep(0.1)
    assert await client.get_task(tid["f"]) == failed_again  # no third attempt


async def test_copy_task_tree_repeated_copies_once(client: AsyncClient) -> None:
    created = await raw(client.stub.CreateTaskTree(tree_request("")))
    root_id = created.task_ids["root"]
    request = task_service_pb2.CopyTaskTreeRequest(id=root_id, request_id="copy-1")
    first = await raw(client.stub.CopyTaskTree(request))
    again = await raw(client.stub.CopyTaskTree(request))
    assert again == first
    roots = [t async for t in client.list_tasks(roots_only=True)]
    assert sorted(t.id for t in roots) == sorted([root_id, first.task_ids[root_id]])


async def test_update_task_repeated_updates_once(client: AsyncClient) -> None:
    task = await client.create_task(name="u", executor="sleep_executor")
    first = await client.update_task(task.id, etag=task.etag, priority=0, request_id="up-1")
    assert first.etag != task.etag
    # The repeat carries the old etag: it must not be ABORTED, nor bump the etag again.
    again = await client.update_task(task.id, etag=task.etag, priority=0, request_id="up-1")
    assert again == first
    assert await client.get_task(task.id) == first


async def test_delete_task_repeated_returns_the_first_answer(client: AsyncClient) -> None:
    created = await raw(client.stub.CreateTaskTree(tree_request("")))
    root_id = created.task_ids["root"]
    first = await client.delete_task(root_id, request_id="del-1")
    assert sorted(first) == sorted(created.task_ids.values())
    assert await client.delete_task(root_id, request_id="del-1") == first
    with pytest.raises(NotFoundError):
        await client.delete_task(root_id)
    assert await all_tasks(client) == []


async def test_request_ids_are_remembered_across_a_restart(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    first_server = await make_server(db_url=db_url)
    first = await raw(make_server.client(first_server).stub.CreateTaskTree(tree_request("r-1")))
    await make_server.stop(first_server)
    client = make_server.client(await make_server(db_url=db_url))
    again = await raw(client.stub.CreateTaskTree(tree_request("r-1")))
    assert again == first
    assert len(await all_tasks(client)) == 3


async def test_request_id_reused_for_another_request_is_refused(client: AsyncClient) -> None:
    await raw(client.stub.CreateTaskTree(tree_request("reused")))
    other = tree_request("reused", execute=True)
    with pytest.raises(InvalidArgumentError) as caught:
        await raw(client.stub.CreateTaskTree(other))
    assert caught.value.reason == "REQUEST_ID_REUSED"
    assert [v.field for v in caught.value.field_violations] == ["request_id"]
    # Another method with the same request_id.
    task = await client.create_task(name="x", executor="sleep_executor")
    with pytest.raises(InvalidArgumentError) as caught:
        await client.execute_task(task.id, request_id="reused")
    assert caught.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task(name="y", executor="sleep_executor", request_id="reused")
    assert caught.value.reason == "REQUEST_ID_REUSED"
    # Nothing was done by the refused requests.
    tasks = await all_tasks(client)
    assert len(tasks) == 4
    assert not any(t.execution_requested for t in tasks)


async def test_a_failed_request_is_not_remembered(client: AsyncClient) -> None:
    request = task_service_pb2.CreateTaskRequest(
        task=task_pb2.Task(name="bad", executor="no_such_executor"), request_id="bad-1"
    )
    for _ in range(2):
        with pytest.raises(InvalidArgumentError) as caught:
            await raw(client.stub.CreateTask(request))
        assert caught.value.reason == "UNKNOWN_EXECUTOR"
    assert await all_tasks(client) == []


# ------------------------------------------------------------------ progress


async def test_sleep_progress_is_reported_rate_limited_and_ends_at_one(
    client: AsyncClient,
) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("s", 1)], execute=True
    )
    tid = ids(created)
    done = await wait_finished(client, tid["s"])
    assert done.status == statuses.COMPLETED
    assert done.progress == 1.0
    events = await history(client, task_id=tid["s"])
    progress = [e for e in events if e.type == "progress"]
    assert 3 <= len(progress) <= 10  # ten reports, some coalesced
    values = [e.progress for e in progress]
    assert all(0 < v <= 1 for v in values)
    assert values == sorted(values) and len(set(values)) == len(values)  # increasing
    for earlier, later in itertools.pairwise(progress):
        assert earlier.time is not None and later.time is not None
        assert (later.time - earlier.time).total_seconds() >= 0.05
    assert all(e.progress_message.startswith("slept") for e in progress)
    final = [e for e in events if e.type == "status_changed"][-1]
    assert (final.status, final.progress) == (statuses.COMPLETED, 1.0)
    assert (await client.get_task(tid["root"])).progress == 1.0


async def test_the_latest_progress_is_always_stored(make_server: ServerFactory) -> None:
    """A burst of reports is coalesced, but the last value is written (trailing write)."""
    gate = asyncio.Event()

    async def burst(context: ExecutionContext) -> Any:
        for step in range(1, 6):
            context.report_progress(step / 10, f"step {step}")
        async with asyncio.timeout(WAIT_S):
            await gate.wait()
        return None

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="burst", run=burst))
    client = make_server.client(await make_server(registry=registry))
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "b", "name": "b", "executor": "burst", "parent_id": "root"},
        ],
        execute=True,
    )
    tid = ids(created)
    latest = await until(client, tid["b"], lambda t: t.progress == 0.5)
    assert latest.progress_message == "step 5"
    assert latest.status == statuses.IN_PROGRESS
    gate.set()
    assert (await wait_finished(client, tid["b"])).progress == 1.0
    progress = [e for e in await history(client, task_id=tid["b"]) if e.type == "progress"]
    assert [e.progress for e in progress] == [0.1, 0.5]


async def test_group_progress_aggregates_mid_run(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("a", 1),
            sleeper("b", 1, dependencies=["a"]),
            sleeper("c", 30),
        ],
        execute=True,
    )
    tid = ids(created)
    mid = await until(client, tid["root"], lambda t: t.progress > 0)
    assert mid.status == statuses.IN_PROGRESS
    assert 0 < mid.progress < 1
    # (The group's figure may run a moment ahead of the task's stored progress.)
    a = await until(client, tid["a"], lambda t: t.progress > 0)
    assert a.progress <= 1
    # The mean over the executable tasks: (a + b + c) / 3 <= (1 + 1 + 0.1) / 3 while c runs.
    tree_view = {t.name: t for t in await client.get_task_tree(tid["root"])}
    assert 0 < tree_view["root_task"].progress < 1
    await until(client, tid["b"], lambda t: t.status == statuses.COMPLETED)
    later = await client.get_task(tid["root"])
    assert later.progress >= 2 / 3
    assert later.progress < 1
    await client.cancel_task(tid["root"])


# ------------------------------------------------------------------ ExplainTask


async def test_explain_not_executing(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("t"), sleeper("u", dependencies=["t"])]
    )
    tid = ids(created)
    why = await client.explain_task(tid["t"])
    assert why.reasons == ["NOT_EXECUTING"]
    assert why.queue_position == 0
    assert why.summary
    assert why.task.id == tid["t"] and why.task.status == statuses.PENDING
    why_u = await client.explain_task(tid["u"])
    assert why_u.reasons == ["NOT_EXECUTING", "WAITING_FOR_DEPENDENCIES"]
    assert [(w.id, w.status, w.execution_requested) for w in why_u.waiting_dependencies] == [
        (tid["t"], statuses.PENDING, False)
    ]


async def test_explain_waiting_for_dependencies(client: AsyncClient) -> None:
    elsewhere = await client.create_task_tree(
        [{"id": "eroot", "name": "elsewhere"}, sleeper("x", parent="eroot")]
    )
    x = elsewhere["x"].id
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("a", 30),
            sleeper("done"),
            sleeper("b", dependencies=["a", "done", {"id": x, "required": False}]),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["a"], lambda t: t.status == statuses.IN_PROGRESS)
    await until(client, tid["done"], lambda t: t.status == statuses.COMPLETED)
    why = await client.explain_task(tid["b"])
    assert why.reasons == ["WAITING_FOR_DEPENDENCIES"]
    assert why.queue_position == 0
    waiting = {w.id: w for w in why.waiting_dependencies}
    assert set(waiting) == {tid["a"], x}  # the completed one is not listed
    assert (waiting[tid["a"]].name, waiting[tid["a"]].status) == ("a", statuses.IN_PROGRESS)
    assert waiting[tid["a"]].required and waiting[tid["a"]].execution_requested
    assert (waiting[x].status, waiting[x].required) == (statuses.PENDING, False)
    assert not waiting[x].execution_requested  # its tree never executed: it would never end
    assert "a" in why.summary
    await client.cancel_task(tid["root"])


async def test_explain_queued_behind_the_concurrency_limit(make_server: ServerFactory) -> None:
    client = make_server.client(await make_server(max_concurrency=1))
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("long", 30, priority=0),
            sleeper("q1"),
            sleeper("q2"),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)
    running = await client.explain_task(tid["long"])
    assert running.reasons == ["RUNNING"]
    assert running.task.status == statuses.IN_PROGRESS
    for position, name in enumerate(("q1", "q2"), start=1):
        why = await client.explain_task(tid[name])
        assert why.reasons == ["CONCURRENCY_LIMIT", "QUEUED"], name
        assert why.queue_position == position
        assert (why.running, why.concurrency_limit) == (1, 1)
        assert why.waiting_dependencies == []
    await client.cancel_task(tid["root"])


async def test_explain_queued_behind_an_executor_limit(make_server: ServerFactory) -> None:
    client = make_server.client(await make_server(executor_limits={"sleep_executor": 1}))
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("long", 30, priority=0), sleeper("q")],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)
    why = await client.explain_task(tid["q"])
    assert why.reasons == ["EXECUTOR_LIMIT", "QUEUED"]
    assert why.queue_position == 1
    await client.cancel_task(tid["root"])


async def test_explain_finished_and_group(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("ok"),
            failing("bad"),
            sleeper("never", dependencies=["bad"]),
        ],
        execute=True,
    )
    tid = ids(created)
    await wait_finished(client, tid["root"])
    for name, status in (
        ("ok", statuses.COMPLETED),
        ("bad", statuses.FAILED),
        ("never", statuses.FAILED),
    ):
        why = await client.explain_task(tid[name])
        assert why.reasons == ["FINISHED"], name
        assert why.task.status == status
        assert why.queue_position == 0
    group = await client.explain_task(tid["root"])
    assert group.reasons == ["GROUP"]
    assert group.task.is_group
    with pytest.raises(NotFoundError):
        await client.explain_task("no-such-task")


async def test_listed_group_progress_equals_each_groups_own(client: AsyncClient) -> None:
    """ListTasks reads one subtree for all the groups of a page inside it: each group's
    progress must still be its own, as GetTask computes it alone, across pages."""
    tasks: list[dict[str, Any]] = [
        {"id": f"g{i}", "name": f"g{i}", "parent_id": f"g{i - 1}" if i else None} for i in range(30)
    ]
    leaf = {"executor": "sleep_executor", "inputs": {"seconds": 0}}
    tasks += [
        {"id": "side", "name": "side", "parent_id": "g3", **leaf},
        {"id": "done", "name": "done", "parent_id": "g29", **leaf},
        {"id": "left", "name": "left", "parent_id": "g29", **leaf},
    ]
    made = await client.create_task_tree(tasks)
    for local in ("side", "done"):
        await client.execute_task(made[local].id)
        await wait_finished(client, made[local].id)
    listed: list[Task] = []
    token = ""
    while True:
        page, token = await client.list_tasks_page(page_size=7, page_token=token)
        listed += page
        if not token:
            break
    groups = [task for task in listed if task.name.startswith("g")]
    assert len(groups) == 30
    alone = {task.id: (await client.get_task(task.id)).progress for task in groups}
    assert {task.id: task.progress for task in groups} == alone
    assert len(set(alone.values())) > 1  # the side branch makes the upper groups differ
    # The mean of each subtree's executable tasks, read from storage: the root's by its
    # tree, the others' by a walk of their subtree.
    assert alone[made["g0"].id] == pytest.approx(2 / 3)  # side, done, left
    assert alone[made["g3"].id] == pytest.approx(2 / 3)
    assert alone[made["g4"].id] == pytest.approx(1 / 2)  # done, left
    assert alone[made["g29"].id] == pytest.approx(1 / 2)
