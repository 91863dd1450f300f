"""Workers in the test's own process: registration, dispatch, results, failures,
NO_WORKER waits, slots, cancellation and timeouts, through the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from taskgrove import AsyncClient, ExecutorFailure, Worker, WorkerContext
from taskgrove_server.app import TaskgroveServer

from tests.conftest import ServerFactory


async def started(worker: Worker, server: TaskgroveServer) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.run(address=f"127.0.0.1:{server.port}"))
    async with asyncio.timeout(10):
        while not worker.registered.is_set():
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return task


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    async with asyncio.timeout(10):
        await task


def doubler(name: str = "doubler", slots: int = 2) -> Worker:
    worker = Worker(name, slots=slots)

    @worker.executor(
        "double",
        input_schema={"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        description="doubles x",
    )
    async def double(ctx: WorkerContext) -> Any:
        ctx.report_progress(0.5, "half way")
        ctx.log.info("doubling %s", ctx.inputs["x"])
        total = sum(r["x"] for r in ctx.dependency_results.values())
        return {"x": ctx.inputs["x"] * 2 + total, "attempt": ctx.attempt}

    @worker.executor("fail")
    def fail(ctx: WorkerContext) -> Any:  # a sync function: runs in a thread
        raise ExecutorFailure("no good", reason="BAD_INPUT", details={"why": "asked to"})

    @worker.executor("crash")
    async def crash(ctx: WorkerContext) -> Any:
        raise KeyError("missing")

    return worker


@pytest.fixture
async def served(make_server: ServerFactory) -> AsyncIterator[tuple[TaskgroveServer, AsyncClient]]:
    server = await make_server(worker_lease_seconds=1.0)
    worker = doubler()
    task = await started(worker, server)
    yield server, make_server.client(server)
    await stopped(worker, task)


async def test_a_tree_runs_on_a_worker_with_dependency_results(
    served: tuple[TaskgroveServer, AsyncClient],
) -> None:
    _, client = served
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root"},
            {"id": "a", "name": "a", "parent_id": "root", "executor": "double", "inputs": {"x": 1}},
            {
                "id": "b",
                "name": "b",
                "parent_id": "root",
                "executor": "double",
                "inputs": {"x": 10},
                "dependencies": [{"id": "a"}],
            },
            {
                "id": "s",
                "name": "s",
                "parent_id": "root",
                "executor": "sleep_executor",
                "inputs": {"seconds": 0},
                "dependencies": [{"id": "b"}],
            },
        ],
        execute=True,
    )
    async with asyncio.timeout(10):
        root = await client.wait(created["root"].id)
    assert root.status == "completed"
    a = await client.get_task(created["a"].id)
    b = await client.get_task(created["b"].id)
    assert a.result == {"x": 2, "attempt": 1}
    assert b.result == {"x": 22, "attempt": 1}
    assert (await client.get_task(created["s"].id)).status == "completed"


async def test_failures_keep_reason_details_and_traceback(
    served: tuple[TaskgroveServer, AsyncClient],
) -> None:
    _, client = served
    chosen = await client.create_task(name="f", executor="fail")
    crashed = await client.create_task(name="c", executor="crash")
    for task in (chosen, crashed):
        await client.execute_task(task.id)
    async with asyncio.timeout(10):
        chosen = await client.wait(chosen.id)
        crashed = await client.wait(crashed.id)
    assert chosen.status == "failed"
    assert chosen.error is not None
    assert (chosen.error.reason, chosen.error.message) == ("BAD_INPUT", "no good")
    assert chosen.error.details["why"] == "asked to"
    assert "ExecutorFailure: no good" in chosen.error.details["traceback"]
    assert crashed.error is not None
    assert crashed.error.reason == "EXECUTOR_ERROR"
    assert crashed.error.message == "KeyError: 'missing'"
    assert 'raise KeyError("missing")' in crashed.error.details["traceback"]


async def test_worker_inputs_are_validated_at_creation(
    served: tuple[TaskgroveServer, AsyncClient],
) -> None:
    from taskgrove import InvalidArgumentError

    _, client = served
    with pytest.raises(InvalidArgumentError) as refused:
        await client.create_task(name="d", executor="double", inputs={"x": "two"})
    assert refused.value.reason == "INVALID_INPUTS"


async def test_list_executors_shows_workers_and_free_slots(
    served: tuple[TaskgroveServer, AsyncClient],
) -> None:
    _, client = served
    executors = {e.id: e for e in await client.list_executors()}
    double = executors["double"]
    assert double.remote and double.description == "doubles x"
    assert double.input_schema["required"] == ["x"]
    assert [(w.name, w.slots, w.free_slots) for w in double.workers] == [("doubler", 2, 2)]
    assert double.free_slots == 2
    assert not executors["sleep_executor"].remote
