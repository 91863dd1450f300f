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
from tests.workers.running import started, stopped
from tests.workers.waiting import until


async def status_is(client: AsyncClient, task_id: str, status: str) -> bool:
    return (await client.get_task(task_id)).status == status


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


class Gate:
    """Attempts that block until released, counted while they run."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.cancelled: list[str] = []
        self.release = asyncio.Event()

    def worker(self, slots: int) -> Worker:
        worker = Worker("gated", slots=slots)

        @worker.executor("gated")
        async def gated(ctx: WorkerContext) -> Any:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.append(ctx.task_id)
                raise
            finally:
                self.running -= 1
            return ctx.task_id

        @worker.executor("blocking")
        def blocking(ctx: WorkerContext) -> Any:  # a thread, told through ctx.cancelled
            if ctx.cancelled.wait(10):
                self.cancelled.append(ctx.task_id)
            return "ignored"

        return worker


async def test_a_worker_never_holds_more_attempts_than_its_slots(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    client = make_server.client(server)
    gate = Gate()
    worker = gate.worker(slots=3)
    running = await started(worker, server)
    tasks = [{"id": "root", "name": "root"}] + [
        {"id": f"t{i}", "name": f"t{i}", "parent_id": "root", "executor": "gated"}
        for i in range(12)
    ]
    created = await client.create_task_tree(tasks, execute=True)
    await until(lambda: gate.running == 3)
    await asyncio.sleep(0.2)  # time to over-assign, if it would
    leaves = [task for key, task in created.items() if key != "root"]
    statuses = [(await client.get_task(task.id)).status for task in leaves]
    assert statuses.count("in_progress") == 3
    waiting = leaves[statuses.index("pending")]
    assert "NO_FREE_WORKER" in (await client.explain_task(waiting.id)).reasons
    gate.release.set()
    async with asyncio.timeout(10):
        root = await client.wait(created["root"].id)
    assert root.status == "completed" and gate.most == 3
    await stopped(worker, running)


async def test_cancel_and_timeout_reach_the_worker(make_server: ServerFactory) -> None:
    from datetime import timedelta

    server = await make_server()
    client = make_server.client(server)
    gate = Gate()
    worker = gate.worker(slots=2)
    running = await started(worker, server)
    cancelled = await client.create_task(name="c", executor="gated")
    timed = await client.create_task(name="t", executor="gated", timeout=timedelta(seconds=0.3))
    for task in (cancelled, timed):
        await client.execute_task(task.id)
    await until(lambda: gate.running == 2)
    await client.cancel_task(cancelled.id)
    assert (await client.get_task(cancelled.id)).status == "cancelled"  # at once
    async with asyncio.timeout(10):
        timed = await client.wait(timed.id)
    await until(lambda: len(gate.cancelled) == 2)
    assert timed.status == "failed" and timed.error is not None
    assert timed.error.reason == "TIMEOUT"
    assert sorted(gate.cancelled) == sorted([cancelled.id, timed.id])
    # The slots are free again: the worker runs the next task.
    gate.release.set()
    after = await client.create_task(name="next", executor="gated")
    await client.execute_task(after.id)
    async with asyncio.timeout(10):
        assert (await client.wait(after.id)).result == after.id
    await stopped(worker, running)


async def test_cancel_of_a_tree_running_on_workers(make_server: ServerFactory) -> None:
    server = await make_server()
    client = make_server.client(server)
    gate = Gate()
    workers = [gate.worker(slots=2), gate.worker(slots=2)]
    running = [await started(worker, server) for worker in workers]
    tasks = [{"id": "root", "name": "root"}] + [
        {"id": f"t{i}", "name": f"t{i}", "parent_id": "root", "executor": "gated"}
        for i in range(10)
    ]
    created = await client.create_task_tree(tasks, execute=True)
    await until(lambda: gate.running == 4)  # both workers full, six tasks waiting
    cancelled = await client.cancel_task(created["root"].id)
    leaves = [task for key, task in created.items() if key != "root"]
    assert set(cancelled) == {task.id for task in leaves}
    assert (await client.get_task(created["root"].id)).status == "cancelled"
    assert {(await client.get_task(task.id)).status for task in leaves} == {"cancelled"}
    await until(lambda: gate.running == 0)  # each worker stopped its functions
    assert len(gate.cancelled) == 4
    # Nothing of the cancelled tree runs later; the freed slots serve new work.
    gate.release.set()
    after = await client.create_task(name="next", executor="gated")
    await client.execute_task(after.id)
    async with asyncio.timeout(10):
        assert (await client.wait(after.id)).status == "completed"
    assert len(gate.cancelled) == 4
    assert {(await client.get_task(task.id)).status for task in leaves} == {"cancelled"}
    for worker, task in zip(workers, running, strict=True):
        await stopped(worker, task)


async def test_a_sync_function_is_told_to_stop(make_server: ServerFactory) -> None:
    server = await make_server()
    client = make_server.client(server)
    gate = Gate()
    worker = gate.worker(slots=1)
    running = await started(worker, server)
    task = await client.create_task(name="b", executor="blocking")
    await client.execute_task(task.id)
    await until(lambda: status_is(client, task.id, "in_progress"))
    await client.cancel_task(task.id)
    await until(lambda: gate.cancelled == [task.id])
    assert (await client.get_task(task.id)).status == "cancelled"
    await stopped(worker, running)


async def test_a_stopping_worker_gives_its_attempts_back(make_server: ServerFactory) -> None:
    server = await make_server()
    client = make_server.client(server)
    gate = Gate()
    first = gate.worker(slots=1)
    running = await started(first, server)
    # One attempt only: an attempt given back by a stopping worker does not count.
    task = await client.create_task(name="g", executor="gated", max_attempts=1)
    await client.execute_task(task.id)
    await until(lambda: gate.running == 1)
    await stopped(first, running)  # long before the lease would run out
    assert (await client.get_task(task.id)).status == "pending"  # waiting for a worker
    gate.release.set()
    second = gate.worker(slots=1)
    running = await started(second, server)
    async with asyncio.timeout(10):
        done = await client.wait(task.id)
    assert (done.status, done.attempt, done.result) == ("completed", 1, task.id)
    await stopped(second, running)
