"""Restarts of a real `taskgrove serve` subprocess on the same SQLite file (DESIGN 4, 7):
nothing is lost, executing trees continue, graceful stops do not consume attempts."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ServerFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.database import stored_tasks
from support.waiting import until_task, wait_finished
from taskgrove import AsyncClient, Task, statuses
from taskgrove_server.testing import ServerProcess, sqlite_url


@pytest.fixture
def proc(db_url: str) -> Iterator[ServerProcess]:
    """A stopped server process; the test starts (and restarts) it."""
    process = ServerProcess(db_url)
    yield process
    process.stop(signal.SIGKILL)


@asynccontextmanager
async def connect(process: ServerProcess) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(process.address) as client:
        yield client


async def until_status(client: AsyncClient, task_id: str, status: str) -> Task:
    return await until_task(client, task_id, lambda task: task.status == status, poll_s=0.02)


async def snapshot(client: AsyncClient, root_ids: list[str]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for root_id in root_ids:
        for task in await client.get_task_tree(root_id):
            tasks[task.id] = task
            assert await client.get_task(task.id) == task
    return tasks


def full_tree() -> list[dict[str, Any]]:
    return [
        {"id": "root", "name": "root_task", "user_id": "alice"},
        {
            "id": "info",
            "name": "system_info_executor",
            "parent_id": "root",
            "inputs": {"resource": "memory"},
            "priority": 0,
        },
        {
            "id": "sleep",
            "name": "a sleeper",
            "executor": "sleep_executor",
            "parent_id": "root",
            "inputs": {"seconds": 0.01, "result": {"nested": [1, "two", None]}},
            "params": {"mode": "demo"},
            "max_attempts": 3,
            "retry_backoff": 0.5,
            "timeout": 30,
            "priority": 3,
        },
        {
            "id": "agg",
            "name": "aggregate_results_executor",
            "parent_id": "root",
            "dependencies": ["info", {"id": "sleep", "required": False}],
        },
    ]


async def test_tasks_survive_a_restart_with_identical_fields(proc: ServerProcess) -> None:
    proc.start()
    async with connect(proc) as client:
        stored = await client.create_task_tree(full_tree())
        single = await client.create_task(name="sleep_executor", inputs={"seconds": 0})
        ran = await client.create_task_tree(
            [
                {"id": "root", "name": "ran"},
                {"id": "ok", "name": "sleep_executor", "parent_id": "root", "inputs": {}},
                {
                    "id": "bad",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"fail": True, "message": "nope"},
                },
            ],
            execute=True,
        )
        assert (await wait_finished(client, ran["root"].id)).status == statuses.FAILED
        roots = [stored["root"].id, single.id, ran["root"].id]
        before = await snapshot(client, roots)
    assert len(before) == 4 + 1 + 3
    assert proc.stop() == 0

    proc.start()
    async with connect(proc) as client:
        after = await snapshot(client, roots)
        listed = [task async for task in client.list_tasks()]
    assert after == before
    assert {task.id for task in listed} == set(before)
    assert after[stored["agg"].id].dependencies == [
        {"id": stored["info"].id, "required": True},
        {"id": stored["sleep"].id, "required": False},
    ]
    assert after[stored["sleep"].id].status == statuses.PENDING  # created, never executed
    assert after[ran["bad"].id].error is not None
    assert after[ran["bad"].id].error.message == "nope"
    assert proc.stop() == 0


async def test_executing_tree_continues_after_a_graceful_restart(proc: ServerProcess) -> None:
    proc.start()
    async with connect(proc) as client:
        created = await client.create_task_tree(
            [
                {"id": "root", "name": "root_task"},
                {
                    "id": "a",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 2},
                },
                {
                    "id": "b",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 2},
                },
                {
                    "id": "after",
                    "name": "aggregate_results_executor",
                    "parent_id": "root",
                    "dependencies": ["a", "b"],
                },
            ],
            execute=True,
        )
        await until_status(client, created["a"].id, statuses.IN_PROGRESS)
        await until_status(client, created["b"].id, statuses.IN_PROGRESS)
        await asyncio.sleep(0.5)
    assert proc.stop(signal.SIGTERM) == 0

    proc.start()
    async with connect(proc) as client:
        root = await wait_finished(client, created["root"].id)
        assert root.status == statuses.COMPLETED
        tree = {task.id: task for task in await client.get_task_tree(created["root"].id)}
    for local in ("a", "b", "after"):
        task = tree[created[local].id]
        assert task.status == statuses.COMPLETED, local
        # The interrupted attempt was given back, not consumed (max_attempts is 1).
        assert task.attempt == 1, local
    assert tree[created["after"].id].result == {
        "results": {
            created["a"].id: {"slept_seconds": 2, "result": None},
            created["b"].id: {"slept_seconds": 2, "result": None},
        },
        "count": 2,
    }
    assert proc.stop() == 0


async def test_in_progress_tasks_are_recovered_after_a_crash(proc: ServerProcess) -> None:
    proc.start()
    async with connect(proc) as client:
        created = await client.create_task_tree(
            [
                {"id": "root", "name": "root_task"},
                {
                    "id": "retryable",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 1},
                    "max_attempts": 2,
                },
                {
                    "id": "last_chance",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 1},
                },
            ],
            execute=True,
        )
        await until_status(client, created["retryable"].id, statuses.IN_PROGRESS)
        await until_status(client, created["last_chance"].id, statuses.IN_PROGRESS)
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL

    proc.start()
    async with connect(proc) as client:
        root = await wait_finished(client, created["root"].id)
        retryable = await client.get_task(created["retryable"].id)
        last_chance = await client.get_task(created["last_chance"].id)
    # A crash consumes the attempt: run again while attempts remain, else fail (not hang).
    assert retryable.status == statuses.COMPLETED
    assert retryable.attempt == 2
    assert last_chance.status == statuses.FAILED
    assert last_chance.error is not None and last_chance.error.reason
    assert root.status == statuses.FAILED
    assert proc.stop() == 0


async def test_a_large_tree_keeps_executing_after_a_crash_mid_run(db_url: str) -> None:
    """ExecuteTask of more than 1,000 tasks commits their execution flag on its own,
    before claiming any: killed mid-run, the server finds every task still flagged and
    runs the tree to the end (a crash costs the running tasks an attempt: two here)."""
    n = 1_200
    proc = ServerProcess(db_url, extra_env={"TASKGROVE_MAX_CONCURRENCY": "8"})
    tree = [{"id": "root", "name": "root_task"}] + [
        {
            "id": f"s{i}",
            "name": "sleep_executor",
            "parent_id": "root",
            "inputs": {"seconds": 0.01},
            "max_attempts": 2,
        }
        for i in range(n)
    ]
    try:
        proc.start()
        async with connect(proc) as client:
            created = await client.create_task_tree(tree, basic=True)
            root_id = created["root"].id
            await client.execute_task(root_id)
            await until_task(client, root_id, lambda root: root.progress > 0, poll_s=0.02)
        assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
        stored = stored_tasks(db_url, root_id=root_id)
        assert len(stored) == n + 1
        assert all(row["execution_requested"] for row in stored.values())
        unfinished = [row for row in stored.values() if row["status"] != statuses.COMPLETED]
        assert len(unfinished) > 1  # killed mid-run (the root among them)

        proc.start()
        async with connect(proc) as client:
            root = await wait_finished(client, root_id, limit_s=60)
        assert root.status == statuses.COMPLETED
        assert {row["status"] for row in stored_tasks(db_url, root_id=root_id).values()} == {
            statuses.COMPLETED
        }
        assert proc.stop() == 0
    finally:
        proc.stop(signal.SIGKILL)


async def test_sigterm_turns_health_not_serving_and_exits_zero(proc: ServerProcess) -> None:
    proc.start()
    assert proc.process is not None
    async with grpc.aio.insecure_channel(proc.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        service = "taskgrove.v1.TaskService"
        check = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING

        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        async with asyncio.timeout(10):
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            proc.process.send_signal(signal.SIGTERM)
            second = await watch.read()
        # The in-flight call is still served after shutdown began, and sees NOT_SERVING.
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert proc.process.poll() is None  # still waiting for in-flight calls
        watch.cancel()
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, proc.stop)
    assert code == 0


async def test_sqlite_file_is_created_on_first_start_in_a_new_directory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh" / "nested" / "dir" / "taskgrove.db"
    assert not path.parent.exists()
    process = ServerProcess(sqlite_url(path))
    try:
        process.start()
        assert path.is_file()
        async with connect(process) as client:
            task = await client.create_task(name="sleep_executor", inputs={"seconds": 0})
        assert process.stop() == 0
        process.start()
        async with connect(process) as client:
            assert await client.get_task(task.id) == task
        assert process.stop() == 0
    finally:
        process.stop(signal.SIGKILL)


async def test_waiting_dependents_continue_after_a_restart(
    make_server: ServerFactory, db_url: str
) -> None:
    first_server = await make_server(db_url=db_url)
    client = make_server.client(first_server)
    first = await client.create_task_tree(
        [{"id": "t1", "name": "sleep_executor", "inputs": {"result": "one"}}]
    )
    second = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "x", "name": "sleep_executor", "parent_id": "root", "inputs": {}},
            {
                "id": "d",
                "name": "aggregate_results_executor",
                "parent_id": "root",
                "dependencies": [first["t1"].id],
            },
        ],
        execute=True,
    )
    await wait_finished(client, second["x"].id)
    assert (await client.get_task(second["d"].id)).status == statuses.PENDING
    await make_server.stop(first_server)

    server = await make_server(db_url=db_url)
    client = make_server.client(server)
    assert (await client.get_task(second["d"].id)).status == statuses.PENDING
    await client.execute_task(first["t1"].id)
    root = await wait_finished(client, second["root"].id)
    assert root.status == statuses.COMPLETED
    d = await client.get_task(second["d"].id)
    assert d.result == {
        "results": {first["t1"].id: {"slept_seconds": 0.0, "result": "one"}},
        "count": 1,
    }
