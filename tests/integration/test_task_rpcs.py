"""Every TaskService RPC through the SDK and the raw stub, plus health and reflection.

Real in-process server on 127.0.0.1 with a temporary SQLite database (fixtures in
tests/conftest.py); runs are awaited with `client.wait` bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from support.listing import every_page
from support.status_details import DOMAIN, status_trailers, unpack
from taskgrove import AsyncClient, InvalidArgumentError, NotFoundError, Task, statuses
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.app import TaskgroveServer

SERVICE = "taskgrove.v1.TaskService"
BUILTINS = {"system_info_executor", "aggregate_results_executor", "sleep_executor"}


# --------------------------------------------------------------------------- helpers


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[str]]:
    """(reason, ErrorInfo metadata, BadRequest fields) of a failed raw call."""
    [value] = status_trailers(error)
    status = status_pb2.Status.FromString(value)
    assert status.code == error.code().value[0]
    infos, bad_requests = unpack(status)
    fields = [v.field for bad_request in bad_requests for v in bad_request.field_violations]
    assert len(infos) == 1
    assert infos[0].domain == DOMAIN
    return infos[0].reason, dict(infos[0].metadata), fields


async def raw_failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def all_tasks(client: AsyncClient) -> list[task_pb2.Task]:
    reply = await client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000))
    assert not reply.next_page_token
    return list(reply.tasks)


async def wait(client: AsyncClient, task_id: str) -> Task:
    async with asyncio.timeout(10):
        return await client.wait(task_id)


def ids(tasks: Sequence[Task | task_pb2.Task]) -> list[str]:
    return [task.id for task in tasks]


# --------------------------------------------------------------------------- CreateTask


async def test_create_task_defaults_sdk(client: AsyncClient) -> None:
    task = await client.create_task(name="system_info_executor", inputs={"resource": "cpu"})
    assert task.id
    assert task.name == "system_info_executor"
    assert task.executor == "system_info_executor"  # chosen by name
    assert task.priority == 2
    assert task.status == statuses.PENDING
    assert task.execution_requested is False
    assert task.attempt == 0
    assert task.max_attempts == 1
    assert task.root_id == task.id
    assert task.parent_id is None
    assert task.user_id == "default"
    assert task.has_children is False
    assert task.inputs == {"resource": "cpu"}
    assert task.result is None and task.error is None
    assert task.progress == 0.0
    assert task.create_time is not None and task.start_time is None and task.end_time is None
    assert task.etag
    assert await client.get_task(task.id) == task


async def test_create_task_defaults_raw(client: AsyncClient) -> None:
    reply = await client.stub.CreateTask(
        task_service_pb2.CreateTaskRequest(task=task_pb2.Task(name="sleep_executor"))
    )
    assert reply.priority == 2
    assert reply.status == task_pb2.TASK_STATUS_PENDING
    assert not reply.execution_requested
    assert reply.root_id == reply.id
    assert reply.parent_id == ""
    assert reply.executor == "sleep_executor"
    assert reply.HasField("create_time") and not reply.HasField("start_time")
    assert not reply.HasField("result") and not reply.HasField("error")
    got = await client.stub.GetTask(task_service_pb2.GetTaskRequest(id=reply.id))
    assert got == reply


async def test_create_task_ignores_id_and_output_fields(client: AsyncClient) -> None:
    message = task_pb2.Task(
        id="my-own-id",
        name="sleep_executor",
        root_id="bogus-root",
        status=task_pb2.TASK_STATUS_COMPLETED,
        attempt=7,
        progress=0.5,
        has_children=True,
        execution_requested=True,
    )
    message.result.string_value = "forged"
    reply = await client.stub.CreateTask(task_service_pb2.CreateTaskRequest(task=message))
    assert reply.id != "my-own-id"
    assert reply.root_id == reply.id
    assert reply.status == task_pb2.TASK_STATUS_PENDING
    assert reply.attempt == 0
    assert reply.progress == 0.0
    assert not reply.has_children
    assert not reply.execution_requested
    assert not reply.HasField("result")


async def test_create_task_keeps_given_fields(client: AsyncClient) -> None:
    first = await client.create_task(name="sleep_executor", user_id="alice")
    task = await client.create_task(
        name="collect",
        executor="aggregate_results_executor",
        user_id="alice",
        priority=0,
        dependencies=[{"id": first.id, "required": False}],
        params={"mode": "fast", "n": 3},
        max_attempts=3,
        retry_backoff=timedelta(milliseconds=250),
        timeout=timedelta(seconds=5),
    )
    assert task.name == "collect"
    assert task.executor == "aggregate_results_executor"
    assert task.user_id == "alice"
    assert task.priority == 0
    assert task.dependencies == [{"id": first.id, "required": False}]
    assert task.params == {"mode": "fast", "n": 3}
    assert task.max_attempts == 3
    assert task.timeout == timedelta(seconds=5)
    assert task.retry_backoff == timedelta(milliseconds=250)
    raw = await client.stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
    assert raw.retry_backoff.ToMilliseconds() == 250
    # Required defaults to true.
    other = await client.create_task(
        name="sleep_executor", user_id="alice", dependencies=[first.id]
    )
    assert other.dependencies == [{"id": first.id, "required": True}]


async def test_create_task_group(client: AsyncClient) -> None:
    group = await client.create_task(name="root_task")
    assert group.executor is None
    assert group.is_group
    assert group.status == statuses.PENDING


async def test_create_child_under_existing_parent(client: AsyncClient) -> None:
    root = await client.create_task(name="root_task")
    assert root.has_children is False
    child = await client.create_task(name="group below", parent_id=root.id)
    grandchild = await client.create_task(name="sleep_executor", parent_id=child.id)
    assert child.parent_id == root.id
    assert child.root_id == root.id
    assert grandchild.root_id == root.id
    assert (await client.get_task(root.id)).has_children is True
    assert (await client.get_task(child.id)).has_children is True
    assert (await client.get_task(grandchild.id)).has_children is False


async def test_create_under_executable_parent(client: AsyncClient) -> None:
    parent = await client.create_task(name="sleep_executor")
    child = await client.create_task(name="sleep_executor", parent_id=parent.id)
    assert child.root_id == parent.id
    assert (await client.get_task(parent.id)).has_children is True


# --------------------------------------------------------------------------- CreateTaskTree


async def test_create_tree_maps_local_ids_raw(client: AsyncClient) -> None:
    stored = await client.create_task(name="sleep_executor", user_id="alice")
    # Children listed before their parents; dependencies on local and stored tasks.
    request = task_service_pb2.CreateTaskTreeRequest(
        tasks=[
            task_pb2.Task(
                id="collect",
                name="aggregate_results_executor",
                parent_id="root",
                dependencies=[
                    task_pb2.Dependency(id="cpu"),
                    task_pb2.Dependency(id="mem", required=False),
                    task_pb2.Dependency(id=stored.id),
                ],
            ),
            task_pb2.Task(id="cpu", name="system_info_executor", parent_id="probe"),
            task_pb2.Task(id="probe", name="probes", parent_id="root"),
            task_pb2.Task(id="root", name="root_task", user_id="alice"),
            task_pb2.Task(id="mem", name="system_info_executor", parent_id="probe"),
        ]
    )
    request.tasks[1].inputs.update({"resource": "cpu"})
    reply = await client.stub.CreateTaskTree(request)

    local = [task.id for task in request.tasks]
    assert set(reply.task_ids) == set(local)
    server_ids = list(reply.task_ids.values())
    assert len(set(server_ids)) == len(server_ids)
    assert not set(server_ids) & set(local)
    # Request order kept.
    assert [task.id for task in reply.tasks] == [reply.task_ids[ref] for ref in local]
    by_ref = dict(zip(local, reply.tasks, strict=True))
    ref = reply.task_ids
    assert by_ref["root"].parent_id == ""
    assert by_ref["probe"].parent_id == ref["root"]
    assert by_ref["cpu"].parent_id == ref["probe"]
    assert by_ref["mem"].parent_id == ref["probe"]
    assert by_ref["collect"].parent_id == ref["root"]
    assert {task.root_id for task in reply.tasks} == {ref["root"]}
    assert {task.user_id for task in reply.tasks} == {"alice"}
    assert [(d.id, d.required) for d in by_ref["collect"].dependencies] == [
        (ref["cpu"], True),
        (ref["mem"], False),
        (stored.id, True),
    ]
    assert by_ref["root"].has_children and by_ref["probe"].has_children
    assert not by_ref["cpu"].has_children and not by_ref["collect"].has_children
    assert by_ref["probe"].executor == ""
    assert by_ref["cpu"].inputs["resource"] == "cpu"
    for task in reply.tasks:
        assert task.status == task_pb2.TASK_STATUS_PENDING
        assert not task.execution_requested
        stored_copy = await client.stub.GetTask(task_service_pb2.GetTaskRequest(id=task.id))
        assert stored_copy.dependencies == task.dependencies
        assert stored_copy.parent_id == task.parent_id


async def test_create_tree_sdk_returns_tasks_by_local_id(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root", "priority": 1},
            {"id": "b", "name": "sleep_executor", "parent_id": "root", "dependencies": ["a"]},
        ]
    )
    assert list(created) == ["root", "a", "b"]
    assert created["a"].priority == 1
    assert created["b"].priority == 2
    assert created["b"].dependencies == [{"id": created["a"].id, "required": True}]
    assert created["a"].root_id == created["root"].id


async def test_create_tree_task_without_local_id(client: AsyncClient) -> None:
    request = task_service_pb2.CreateTaskTreeRequest(
        tasks=[
            task_pb2.Task(id="root", name="root_task"),
            task_pb2.Task(name="sleep_executor", parent_id="root"),
        ]
    )
    reply = await client.stub.CreateTaskTree(request)
    assert set(reply.task_ids) == {"root"}
    assert len(reply.tasks) == 2
    assert reply.tasks[1].parent_id == reply.task_ids["root"]


async def test_create_tree_under_existing_parent(client: AsyncClient) -> None:
    root = await client.create_task(name="root_task")
    created = await client.create_task_tree(
        [
            {"id": "stage", "name": "stage", "parent_id": root.id},
            {"id": "s1", "name": "sleep_executor", "parent_id": "stage"},
        ]
    )
    assert created["stage"].parent_id == root.id
    assert created["stage"].root_id == root.id
    assert created["s1"].root_id == root.id
    assert (await client.get_task(root.id)).has_children is True


async def test_create_tree_execute_runs_it(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "info", "name": "system_info_executor", "parent_id": "root",
             "inputs": {"resource": "memory"}},
            {"id": "nap", "name": "sleep_executor", "parent_id": "root",
             "inputs": {"seconds": 0, "result": [1, 2]}},
            {"id": "sum", "name": "aggregate_results_executor", "parent_id": "root",
             "dependencies": ["info", "nap"]},
        ],
        execute=True,
    )  # fmt: skip
    assert all(task.execution_requested for task in created.values())
    root = await wait(client, created["root"].id)
    assert root.status == statuses.COMPLETED
    assert root.progress == 1.0
    info = await client.get_task(created["info"].id)
    assert info.status == statuses.COMPLETED
    assert info.result["total_bytes"] > 0
    assert info.inputs == {"resource": "memory"}  # stored inputs untouched
    summary = await client.get_task(created["sum"].id)
    assert summary.result["count"] == 2
    assert summary.result["results"][created["nap"].id] == {"slept_seconds": 0, "result": [1, 2]}
    assert set(summary.result["results"]) == {created["info"].id, created["nap"].id}


async def test_create_tree_execute_under_existing_parent_runs_only_the_new_subtree(
    client: AsyncClient,
) -> None:
    root = await client.create_task(name="root_task")
    old = await client.create_task(name="sleep_executor", parent_id=root.id)
    created = await client.create_task_tree(
        [
            {"id": "stage", "name": "stage", "parent_id": root.id},
            {"id": "s1", "name": "sleep_executor", "parent_id": "stage"},
        ],
        execute=True,
    )
    assert (await wait(client, created["stage"].id)).status == statuses.COMPLETED
    assert (await client.get_task(created["s1"].id)).status == statuses.COMPLETED
    untouched = await client.get_task(old.id)
    assert untouched.status == statuses.PENDING
    assert not untouched.execution_requested


async def test_create_tree_without_execute_does_not_run(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root"},
        ]
    )
    # Something else runs to completion meanwhile; the unexecuted tree stays untouched.
    other = await client.create_task(name="sleep_executor")
    await client.execute_task(other.id)
    assert (await wait(client, other.id)).status == statuses.COMPLETED
    a = await client.get_task(created["a"].id)
    assert a.status == statuses.PENDING
    assert a.attempt == 0
    assert not a.execution_requested


# --------------------------------------------------------------------------- GetTask


async def test_get_task_unknown_id(client: AsyncClient) -> None:
    error = await raw_failure(client.stub.GetTask(task_service_pb2.GetTaskRequest(id="nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    reason, metadata, fields = error_info(error)
    assert reason == "TASK_NOT_FOUND"
    assert metadata == {"id": "nope"}
    assert fields == ["id"]
    with pytest.raises(NotFoundError) as caught:
        await client.get_task("nope")
    assert caught.value.reason == "TASK_NOT_FOUND"
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


async def test_get_task_empty_id(client: AsyncClient) -> None:
    error = await raw_failure(client.stub.GetTask(task_service_pb2.GetTaskRequest(id="")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _, fields = error_info(error)
    assert reason == "ID_REQUIRED"
    assert fields == ["id"]
    with pytest.raises(InvalidArgumentError) as caught:
        await client.get_task("")
    assert caught.value.reason == "ID_REQUIRED"
    assert [v.field for v in caught.value.field_violations] == ["id"]


# --------------------------------------------------------------------------- GetTaskTree


@pytest.fixture
async def family(client: AsyncClient) -> dict[str, str]:
    """root > b > b1; root > a > a1, a2 (request order b before a); then a3 added later."""
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "a1", "name": "sleep_executor", "parent_id": "a"},
            {"id": "b", "name": "group b", "parent_id": "root"},
            {"id": "a", "name": "group a", "parent_id": "root"},
            {"id": "b1", "name": "sleep_executor", "parent_id": "b"},
            {"id": "a2", "name": "sleep_executor", "parent_id": "a"},
        ]
    )
    names = {ref: task.id for ref, task in created.items()}
    names["a3"] = (await client.create_task(name="sleep_executor", parent_id=names["a"])).id
    return names


async def test_get_task_tree_pre_order(client: AsyncClient, family: dict[str, str]) -> None:
    tree = await client.get_task_tree(family["root"])
    order = ["root", "b", "b1", "a", "a1", "a2", "a3"]
    assert ids(tree) == [family[ref] for ref in order]
    position = {task.id: index for index, task in enumerate(tree)}
    for task in tree[1:]:
        assert task.parent_id is not None
        assert position[task.parent_id] < position[task.id]


async def test_get_task_tree_of_a_subtree(client: AsyncClient, family: dict[str, str]) -> None:
    tree = await client.get_task_tree(family["a"])
    assert ids(tree) == [family[ref] for ref in ["a", "a1", "a2", "a3"]]
    leaf = await client.get_task_tree(family["a3"])
    assert ids(leaf) == [family["a3"]]


async def test_get_task_tree_max_depth(client: AsyncClient, family: dict[str, str]) -> None:
    request = task_service_pb2.GetTaskTreeRequest(id=family["root"], max_depth=1)
    reply = await client.stub.GetTaskTree(request)
    assert ids(reply.tasks) == [family["root"], family["b"], family["a"]]
    two = await client.get_task_tree(family["root"], max_depth=2)
    assert len(two) == 7
    deep = await client.get_task_tree(family["root"], max_depth=50)
    assert ids(deep) == ids(await client.get_task_tree(family["root"], max_depth=0))


async def test_get_task_tree_errors(client: AsyncClient) -> None:
    cases = [
        (
            task_service_pb2.GetTaskTreeRequest(id="nope"),
            grpc.StatusCode.NOT_FOUND,
            "TASK_NOT_FOUND",
        ),
        (
            task_service_pb2.GetTaskTreeRequest(id=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ID_REQUIRED",
        ),
        (
            task_service_pb2.GetTaskTreeRequest(id="nope", max_depth=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_DEPTH",
        ),
    ]
    for request, code, expected in cases:
        error = await raw_failure(client.stub.GetTaskTree(request))
        assert error.code() == code
        assert error_info(error)[0] == expected
    with pytest.raises(NotFoundError):
        await client.get_task_tree("nope")


# --------------------------------------------------------------------------- ListTasks


@pytest.fixture
async def population(client: AsyncClient) -> dict[str, str]:
    """alice: tree r1 > x, y (executed, completed) and a pending root w; bob: r2 > z."""
    one = await client.create_task_tree(
        [
            {"id": "r1", "name": "root_task", "user_id": "alice"},
            {"id": "x", "name": "sleep_executor", "parent_id": "r1"},
            {"id": "y", "name": "sleep_executor", "parent_id": "r1"},
        ],
        execute=True,
    )
    assert (await wait(client, one["r1"].id)).status == statuses.COMPLETED
    two = await client.create_task_tree(
        [
            {"id": "r2", "name": "root_task", "user_id": "bob"},
            {"id": "z", "name": "sleep_executor", "parent_id": "r2"},
        ]
    )
    w = await client.create_task(name="sleep_executor", user_id="alice")
    names = {ref: task.id for ref, task in {**one, **two}.items()}
    names["w"] = w.id
    return names


async def listed(client: AsyncClient, **filters: object) -> list[str]:
    return [task.id async for task in client.list_tasks(**filters)]


async def test_list_tasks_oldest_first(client: AsyncClient, population: dict[str, str]) -> None:
    everything = await listed(client)
    assert everything == [population[r] for r in ["r1", "x", "y", "r2", "z", "w"]]


async def test_list_tasks_filters(client: AsyncClient, population: dict[str, str]) -> None:
    p = population

    def refs(*names: str) -> list[str]:
        return [p[name] for name in names]

    assert await listed(client, statuses=[statuses.COMPLETED]) == refs("r1", "x", "y")
    assert await listed(client, statuses=[statuses.PENDING]) == refs("r2", "z", "w")
    both = await listed(client, statuses=[statuses.PENDING, statuses.COMPLETED])
    assert both == refs("r1", "x", "y", "r2", "z", "w")
    assert await listed(client, statuses=[statuses.FAILED]) == []
    assert await listed(client, parent_id=p["r1"]) == refs("x", "y")
    assert await listed(client, parent_id=p["x"]) == []
    assert await listed(client, roots_only=True) == refs("r1", "r2", "w")
    assert await listed(client, user_id="bob") == refs("r2", "z")
    assert await listed(client, user_id="nobody") == []
    assert await listed(client, user_id="alice", roots_only=True) == refs("r1", "w")
    assert await listed(
        client, user_id="alice", statuses=[statuses.PENDING], roots_only=True
    ) == refs("w")


async def test_list_tasks_reports_group_progress_like_get_task(client: AsyncClient) -> None:
    """A group's progress is the mean over its executable descendants (proto `Task.progress`)
    whichever RPC reads it."""
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "g1", "name": "first", "parent_id": "root"},
            {"id": "x", "name": "sleep_executor", "parent_id": "g1"},
            {"id": "y", "name": "sleep_executor", "parent_id": "root"},
        ]
    )
    await client.execute_task(created["g1"].id)
    assert (await wait(client, created["g1"].id)).status == statuses.COMPLETED
    root = await client.get_task(created["root"].id)
    assert root.progress == 0.5  # x completed, y not started
    listed_tasks = {task.id: task async for task in client.list_tasks()}
    tree = {task.id: task for task in await client.get_task_tree(created["root"].id)}
    for ref, task in created.items():
        expected = (await client.get_task(task.id)).progress
        assert tree[task.id].progress == expected, ref
        assert listed_tasks[task.id].progress == expected, ref


async def test_list_tasks_raw_statuses(client: AsyncClient, population: dict[str, str]) -> None:
    request = task_service_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_COMPLETED])
    reply = await client.stub.ListTasks(request)
    assert {task.status for task in reply.tasks} == {task_pb2.TASK_STATUS_COMPLETED}
    assert len(reply.tasks) == 3
    assert reply.next_page_token == ""


async def test_list_tasks_rejects_bad_arguments(client: AsyncClient) -> None:
    unspecified = task_service_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_UNSPECIFIED])
    cases = [
        (unspecified, "INVALID_STATUS", "statuses"),
        (task_service_pb2.ListTasksRequest(page_size=-1), "INVALID_PAGE_SIZE", "page_size"),
    ]
    for request, reason, field in cases:
        error = await raw_failure(client.stub.ListTasks(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error)[0] == reason
        assert error_info(error)[2] == [field]


async def test_list_tasks_paging_covers_everything_once(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}]
        + [{"id": f"t{i}", "name": "sleep_executor", "parent_id": "root"} for i in range(24)]
    )
    expected = [task.id for task in created.values()]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = await client.list_tasks_page(page_size=7, page_token=token)
        pages += 1
        assert len(page) <= 7
        seen.extend(task.id for task in page)
        if not token:
            break
        assert len(page) == 7
    assert pages == 4  # 25 tasks: 7 + 7 + 7 + 4
    assert seen == expected
    # The SDK iterator sees the same, whatever the page size.
    assert await listed(client, page_size=3) == expected
    assert await listed(client) == expected


async def test_list_tasks_paging_with_filters(client: AsyncClient) -> None:
    for index in range(10):
        await client.create_task(name="sleep_executor", user_id="even" if index % 2 else "odd")
    evens = [task.id async for task in client.list_tasks(user_id="even")]
    assert len(evens) == 5
    page, token = await client.list_tasks_page(user_id="even", page_size=2)
    collected = [task.id for task in page]
    while token:
        page, token = await client.list_tasks_page(user_id="even", page_size=2, page_token=token)
        assert all(task.user_id == "even" for task in page)
        collected.extend(task.id for task in page)
    assert collected == evens


async def test_list_tasks_exact_multiple_of_page_size(client: AsyncClient) -> None:
    for _ in range(4):
        await client.create_task(name="sleep_executor")
    first, token = await client.list_tasks_page(page_size=2)
    second, token2 = await client.list_tasks_page(page_size=2, page_token=token)
    assert len(first) == 2 and len(second) == 2
    assert token2 == ""  # no empty trailing page


async def test_list_tasks_page_continues_after_new_tasks(client: AsyncClient) -> None:
    before = [(await client.create_task(name="sleep_executor")).id for _ in range(3)]
    page, token = await client.list_tasks_page(page_size=2)
    assert ids(page) == before[:2]
    late = (await client.create_task(name="sleep_executor")).id
    rest: list[str] = []
    while token:
        page, token = await client.list_tasks_page(page_size=2, page_token=token)
        rest.extend(ids(page))
    assert rest == [before[2], late]


async def test_list_tasks_page_size_defaults_and_cap(client: AsyncClient) -> None:
    await client.create_task_tree(
        [{"id": "root", "name": "root_task"}]
        + [{"id": f"t{i}", "name": "sleep_executor", "parent_id": "root"} for i in range(1004)]
    )
    default_page, token = await client.list_tasks_page()
    assert len(default_page) == 100 and token
    capped, token = await client.list_tasks_page(page_size=5000)
    assert len(capped) == 1000 and token
    rest, token = await client.list_tasks_page(page_size=5000, page_token=token)
    assert len(rest) == 5 and token == ""


async def test_list_tasks_token_bound_to_filters(client: AsyncClient) -> None:
    root = await client.create_task(name="root_task", user_id="alice")
    for _ in range(3):
        await client.create_task(name="sleep_executor", parent_id=root.id)
    _, token = await client.list_tasks_page(page_size=1)
    assert token
    different = [
        {"statuses": [task_pb2.TASK_STATUS_PENDING]},
        {"parent_id": root.id},
        {"roots_only": True},
        {"user_id": "alice"},
    ]
    for filters in different:
        request = task_service_pb2.ListTasksRequest(page_size=1, page_token=token, **filters)
        error = await raw_failure(client.stub.ListTasks(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, filters
        reason, _, fields = error_info(error)
        assert (reason, fields) == ("INVALID_PAGE_TOKEN", ["page_token"])
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list_tasks_page(user_id="alice", page_token=token)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    # The same filters with another page size continue normally.
    page, _ = await client.list_tasks_page(page_size=2, page_token=token)
    assert len(page) == 2


async def test_list_tasks_order_by_create_time_both_ways(client: AsyncClient) -> None:
    """`create_time desc` lists newest first; tasks created together keep their order
    (reversed); pages of 1, 2 and 3 give the same listing in both orders."""
    created: list[str] = []
    for index in range(3):
        tree = await client.create_task_tree(
            [
                {"id": "r", "name": f"tree {index}", "user_id": "order"},
                {"id": "a", "name": "a", "parent_id": "r", "executor": "sleep_executor"},
                {"id": "b", "name": "b", "parent_id": "r", "executor": "sleep_executor"},
            ]
        )
        created.extend(tree[key].id for key in ("r", "a", "b"))
    oldest_first = [task.id async for task in client.list_tasks(user_id="order")]
    assert oldest_first == created
    for size in (1, 2, 3, 100):
        assert await every_page(client, size, user_id="order") == created
        assert await every_page(client, size, user_id="order", order_by="create_time") == created
        newest = await every_page(client, size, user_id="order", order_by="create_time desc")
        assert newest == created[::-1], size
    roots = await every_page(client, 1, roots_only=True, order_by="  create_time   desc ")
    assert roots == created[::3][::-1]
    # The newest tasks come first even when more match than a page holds.
    page, token = await client.list_tasks_page(page_size=2, order_by="create_time desc")
    assert [task.id for task in page] == created[:-3:-1] and token


async def test_list_tasks_page_tokens_keep_their_order(client: AsyncClient) -> None:
    for index in range(4):
        await client.create_task(name=f"t{index}")
    _, ascending = await client.list_tasks_page(page_size=1)
    _, descending = await client.list_tasks_page(page_size=1, order_by="create_time desc")
    for token, order in (
        (ascending, "create_time desc"),
        (descending, ""),
        (descending, "create_time"),
    ):
        with pytest.raises(InvalidArgumentError) as caught:
            await client.list_tasks_page(page_size=1, page_token=token, order_by=order)
        assert caught.value.reason == "INVALID_PAGE_TOKEN", order
    second, _ = await client.list_tasks_page(
        page_size=1, page_token=descending, order_by="create_time desc"
    )
    assert second[0].name == "t2"


async def test_list_tasks_refuses_other_orders(client: AsyncClient) -> None:
    for order in ("name", "create_time descending", "create_time desc, name", "desc", "seq"):
        request = task_service_pb2.ListTasksRequest(order_by=order)
        error = await raw_failure(client.stub.ListTasks(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, order
        reason, _, fields = error_info(error)
        assert (reason, fields) == ("INVALID_ORDER_BY", ["order_by"]), order
        assert "create_time desc" in (error.details() or "")


async def test_list_tasks_token_of_filtered_listing_reused_unfiltered(
    client: AsyncClient,
) -> None:
    for _ in range(3):
        await client.create_task(name="sleep_executor")
    _, token = await client.list_tasks_page(page_size=1, statuses=[statuses.PENDING])
    error = await raw_failure(
        client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_token=token))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error)[0] == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!not-base64!!!",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b'{"after": "x", "filters": "y"}').decode(),
        base64.urlsafe_b64encode(json.dumps({"after": 1, "filters": "0" * 16}).encode()).decode(),
        base64.urlsafe_b64encode(b"null").decode(),
    ],
)
async def test_list_tasks_garbage_token(client: AsyncClient, token: str) -> None:
    await client.create_task(name="sleep_executor")
    request = task_service_pb2.ListTasksRequest(page_token=token)
    error = await raw_failure(client.stub.ListTasks(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error)[:3:2] == ("INVALID_PAGE_TOKEN", ["page_token"])
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list_tasks_page(page_token=token)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


# --------------------------------------------------------------------------- ExecuteTask


async def test_execute_task_schedules_and_is_idempotent(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "g", "name": "group", "parent_id": "root"},
            {"id": "a", "name": "sleep_executor", "parent_id": "g"},
            {"id": "b", "name": "sleep_executor", "parent_id": "root"},
            {"id": "c", "name": "aggregate_results_executor", "parent_id": "root",
             "dependencies": ["a", "b"]},
        ]
    )  # fmt: skip
    request = task_service_pb2.ExecuteTaskRequest(id=created["root"].id)
    first = await client.stub.ExecuteTask(request)
    assert first.scheduled_count == 3  # groups run no code and are not counted
    assert first.task.id == created["root"].id
    assert first.task.execution_requested
    again = await client.stub.ExecuteTask(request)
    assert again.scheduled_count == 0
    root = await wait(client, created["root"].id)
    assert root.status == statuses.COMPLETED
    after = await client.stub.ExecuteTask(request)
    assert after.scheduled_count == 0
    assert after.task.status == task_pb2.TASK_STATUS_COMPLETED
    for ref in ("a", "b", "c"):
        task = await client.get_task(created[ref].id)
        assert task.status == statuses.COMPLETED
        assert task.attempt == 1  # ran exactly once


async def test_execute_task_sdk_returns_the_task(client: AsyncClient) -> None:
    task = await client.create_task(name="sleep_executor", inputs={"result": "done"})
    executed = await client.execute_task(task.id)
    assert executed.id == task.id
    assert executed.execution_requested
    finished = await wait(client, task.id)
    assert finished.status == statuses.COMPLETED
    assert finished.result == {"slept_seconds": 0.0, "result": "done"}
    assert finished.end_time is not None and finished.start_time is not None


async def test_execute_subtree_only(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "g1", "name": "first", "parent_id": "root"},
            {"id": "x", "name": "sleep_executor", "parent_id": "g1"},
            {"id": "g2", "name": "second", "parent_id": "root"},
            {"id": "y", "name": "sleep_executor", "parent_id": "g2"},
        ]
    )
    reply = await client.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=created["g1"].id))
    assert reply.scheduled_count == 1
    assert (await wait(client, created["g1"].id)).status == statuses.COMPLETED
    y = await client.get_task(created["y"].id)
    assert y.status == statuses.PENDING and not y.execution_requested
    reply = await client.stub.ExecuteTask(
        task_service_pb2.ExecuteTaskRequest(id=created["root"].id)
    )
    assert reply.scheduled_count == 1  # only y; x already ran
    assert (await wait(client, created["root"].id)).status == statuses.COMPLETED
    assert (await client.get_task(created["x"].id)).attempt == 1


async def test_execute_task_errors(client: AsyncClient) -> None:
    error = await raw_failure(
        client.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id="missing"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error)[0] == "TASK_NOT_FOUND"
    error = await raw_failure(client.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error)[0] == "ID_REQUIRED"
    with pytest.raises(NotFoundError) as caught:
        await client.execute_task("missing")
    assert caught.value.reason == "TASK_NOT_FOUND"


# --------------------------------------------------------------------------- ListExecutors


async def test_list_executors(client: AsyncClient) -> None:
    executors = await client.list_executors()
    by_id = {executor.id: executor for executor in executors}
    assert len(by_id) == len(executors)
    assert set(by_id) >= BUILTINS
    for executor in executors:
        assert executor.description
        assert executor.disabled or executor.input_schema.get("type") == "object"
    info = by_id["system_info_executor"].input_schema
    assert set(info["properties"]["resource"]["enum"]) == {"cpu", "memory", "disk", "all"}
    assert info["additionalProperties"] is False
    sleep = by_id["sleep_executor"].input_schema
    assert sleep["properties"]["seconds"]["type"] == "number"
    assert by_id["aggregate_results_executor"].input_schema == {"type": "object"}
    raw = await client.stub.ListExecutors(task_service_pb2.ListExecutorsRequest())
    assert [e.id for e in raw.executors] == [e.id for e in executors]


async def test_command_executor_is_listed_as_disabled_with_how_to_enable_it(
    client: AsyncClient,
) -> None:
    """Started without --allow-command: listed, disabled, and its tasks refused saying how
    to enable it (not "not registered")."""
    command = {e.id: e for e in await client.list_executors()}["command_executor"]
    assert command.disabled and not command.remote
    assert "--allow-command" in command.disabled_reason
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task(name="c", executor="command_executor", inputs={"argv": ["echo"]})
    assert caught.value.reason == "UNKNOWN_EXECUTOR"
    assert "is disabled on this server" in caught.value.message
    assert "--allow-command" in caught.value.message


async def test_a_mistyped_executor_gets_a_suggestion(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task(name="s", executor="sleep_exector", inputs={"seconds": 0})
    assert caught.value.reason == "UNKNOWN_EXECUTOR"
    assert "did you mean 'sleep_executor'?" in caught.value.message
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task(name="s", executor="zzz", inputs={})
    assert "(registered: aggregate_results_executor, " in caught.value.message


# --------------------------------------------------------------------------- health, reflection


@pytest.fixture
async def channel(server: TaskgroveServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


async def test_health_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    error = await raw_failure(stub.Check(health_pb2.HealthCheckRequest(service="no.Such")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


REFLECTION_VERSIONS = ("grpc.reflection.v1", "grpc.reflection.v1alpha")


@pytest.mark.parametrize("package", REFLECTION_VERSIONS)
async def test_reflection_lists_and_describes_the_service(
    channel: grpc.aio.Channel, package: str
) -> None:
    # v1 and v1alpha share their messages' wire format: v1alpha's classes speak both.
    info = channel.stream_stream(
        f"/{package}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol=f"{package}.ServerReflection"
        ),
    ]
    replies = [reply async for reply in info(iter(requests), timeout=10)]
    assert len(replies) == 3
    services = {s.name for s in replies[0].list_services_response.service}
    assert {
        SERVICE,
        "grpc.health.v1.Health",
        *(f"{v}.ServerReflection" for v in REFLECTION_VERSIONS),
    } <= services
    files = replies[1].file_descriptor_response.file_descriptor_proto
    assert files, replies[1]
    names = set()
    for blob in files:
        proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
        for service in proto.service:
            names.add(f"{proto.package}.{service.name}")
            if service.name == "TaskService":
                methods = {m.name for m in service.method}
                assert {"CreateTask", "CreateTaskTree", "GetTask", "ListTasks"} <= methods
    assert SERVICE in names
    [itself] = replies[2].file_descriptor_response.file_descriptor_proto
    described = descriptor_pb2.FileDescriptorProto.FromString(itself)
    assert described.package == package
    [method] = described.service[0].method
    assert method.input_type == f".{package}.ServerReflectionRequest"


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_buf_curl_calls_the_api_through_reflection(
    server: TaskgroveServer, protocol: str
) -> None:
    """A generic client that knows nothing but the address: the schema comes from reflection."""
    url = f"http://127.0.0.1:{server.port}/{SERVICE}/CreateTask"
    name = f"from buf curl over {protocol}"
    body = {"task": {"name": name, "executor": "sleep_executor", "inputs": {"seconds": 0.25}}}
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("buf")), "curl", "--protocol", "grpc",
        "--http2-prior-knowledge", "--reflect-protocol", protocol, "-d", json.dumps(body), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    created = json.loads(out)
    assert (created["name"], created["inputs"]) == (name, {"seconds": 0.25})
    assert created["status"] == "TASK_STATUS_PENDING"
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        stored = await client.get_task(created["id"])
    assert (stored.name, stored.executor, stored.inputs) == (
        name,
        "sleep_executor",
        {"seconds": 0.25},
    )


async def test_create_task_tree_basic_view_leaves_out_the_bulky_fields(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task", "user_id": "viewer"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root",
             "inputs": {"seconds": 0, "result": {"big": [1, 2, 3]}}},
        ],
        basic=True,
    )  # fmt: skip
    task = created["a"]
    assert (task.name, task.executor, task.status) == (
        "sleep_executor",
        "sleep_executor",
        "pending",
    )
    assert task.parent_id == created["root"].id and task.root_id == created["root"].id
    assert task.inputs == {} and task.create_time is None  # left out, not lost:
    stored = await client.get_task(task.id)
    assert stored.inputs == {"seconds": 0, "result": {"big": [1, 2, 3]}}


async def test_a_task_added_under_a_finished_group_reopens_it(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task", "user_id": "reopen"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root"},
        ],
        execute=True,
    )
    root = created["root"].id
    async with asyncio.timeout(10):
        assert (await client.wait(root)).status == statuses.COMPLETED
    late = await client.create_task(name="sleep_executor", user_id="reopen", parent_id=root)
    reopened = await client.get_task(root)
    assert reopened.status == statuses.IN_PROGRESS  # something below is not finished
    assert reopened.progress == 0.5
    await client.execute_task(late.id)
    async with asyncio.timeout(10):
        assert (await client.wait(root)).status == statuses.COMPLETED
    assert (await client.get_task(root)).progress == 1.0
