"""Worker processes that die, stall and crowd: killed mid-task, stopped past the lease,
three sharing a large tree. Counted by the recording executor (tests/workers/processes.py)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from taskgrove import AsyncClient, Task

from tests.conftest import ServerFactory
from tests.workers.processes import Line, WorkerProcess, records
from tests.workers.waiting import until

pytestmark = pytest.mark.soak


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    # In a thread: the in-process server must go on serving the workers' goodbyes.
    await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in started))


def check_ran_once(tasks: list[Task], lines: list[Line]) -> None:
    """Every task completed; no attempt started twice, none after the completing one (an
    attempt assigned to a killed worker may never have started)."""
    starts: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        if line.kind == "start":
            starts[line.task_id].append(line.attempt)
    for task in tasks:
        assert task.status == "completed", task
        attempts = starts[task.id]
        assert len(set(attempts)) == len(attempts), (task.id, attempts)
        assert max(attempts) == task.attempt, (task.id, attempts)
        completing = [
            line
            for line in lines
            if line.kind == "done" and line.task_id == task.id and line.attempt == task.attempt
        ]
        assert len(completing) == 1 and task.result == {"pid": completing[0].pid}


async def connected(client: AsyncClient, count: int) -> bool:
    """Whether `count` workers serve the recording executor."""
    found = [e for e in await client.list_executors() if e.id == "record"]
    return bool(found) and len(found[0].workers) == count


async def leaves_of(client: AsyncClient, root_id: str) -> list[Task]:
    return [task for task in await client.get_task_tree(root_id) if task.executor]


async def test_a_killed_worker_s_tasks_run_again_elsewhere(
    make_server: ServerFactory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=1.0)
    client = make_server.client(server)
    record = tmp_path / "record.txt"
    doomed = WorkerProcess(tmp_path, server.port, record, slots=2)
    workers.append(doomed)
    survivor = WorkerProcess(tmp_path, server.port, record, slots=2)
    workers.append(survivor)
    tasks = [{"id": "root", "name": "root"}] + [
        {
            "id": f"t{i}",
            "name": f"t{i}",
            "parent_id": "root",
            "executor": "record",
            "inputs": {"seconds": 0.3},
            "max_attempts": 3,
            "retry_backoff": timedelta(milliseconds=10),
        }
        for i in range(16)
    ]
    await until(lambda: connected(client, 2), seconds=20)
    created = await client.create_task_tree(tasks, execute=True)
    await until(lambda: any(line.pid == doomed.pid for line in records(record)))
    doomed.signal(signal.SIGKILL)
    async with asyncio.timeout(30):
        root = await client.wait(created["root"].id)
    assert root.status == "completed"
    leaves = await leaves_of(client, root.id)
    lines = records(record)
    check_ran_once(leaves, lines)
    killed = {line.task_id for line in lines if line.pid == doomed.pid and line.kind == "start"}
    finished_by_doomed = {
        line.task_id for line in lines if line.pid == doomed.pid and line.kind == "done"
    }
    rerun = killed - finished_by_doomed
    assert rerun, "the kill found no task running"
    for task in leaves:
        if task.id in rerun:
            assert task.attempt >= 2 and task.result == {"pid": survivor.pid}


async def test_a_stopped_worker_loses_its_lease_and_its_late_result_is_refused(
    make_server: ServerFactory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=1.0)
    client = make_server.client(server)
    record = tmp_path / "record.txt"
    zombie = WorkerProcess(tmp_path, server.port, record, slots=1)
    workers.append(zombie)

    await until(lambda: connected(client, 1), seconds=20)
    task = await client.create_task(
        name="slow",
        executor="record",
        inputs={"seconds": 2.5},
        max_attempts=2,
        retry_backoff=timedelta(milliseconds=10),
    )
    await client.execute_task(task.id)
    await until(lambda: any(line.kind == "start" for line in records(record)))
    zombie.signal(signal.SIGSTOP)
    healthy = WorkerProcess(tmp_path, server.port, record, slots=1)
    workers.append(healthy)
    async with asyncio.timeout(30):
        done = await client.wait(task.id)
    assert (done.status, done.attempt, done.result) == ("completed", 2, {"pid": healthy.pid})
    zombie.signal(signal.SIGCONT)  # it finishes attempt 1 and reports it
    await until(lambda: "refused: STALE_LEASE" in zombie.log, seconds=20)
    lines = records(record)
    assert [(line.kind, line.attempt, line.pid) for line in lines if line.kind == "done"] == [
        ("done", 2, healthy.pid),
        ("done", 1, zombie.pid),
    ]
    after = await client.get_task(task.id)
    assert (after.status, after.attempt, after.result, after.etag) == (
        "completed",
        2,
        {"pid": healthy.pid},
        done.etag,
    )


async def test_three_workers_share_a_large_tree_within_their_slots(
    make_server: ServerFactory, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    server = await make_server()
    client = make_server.client(server)
    record = tmp_path / "record.txt"
    for _ in range(3):
        workers.append(WorkerProcess(tmp_path, server.port, record, slots=4))

    await until(lambda: connected(client, 3), seconds=20)
    tasks = [{"id": "root", "name": "root"}] + [
        {
            "id": f"t{i}",
            "name": f"t{i}",
            "parent_id": "root",
            "executor": "record",
            "inputs": {"seconds": 0.002},
        }
        for i in range(1000)
    ]
    created = await client.create_task_tree(tasks, execute=True, basic=True)
    async with asyncio.timeout(60):
        root = await client.wait(created["root"].id)
    assert root.status == "completed"
    lines = records(record)
    check_ran_once(await leaves_of(client, root.id), lines)
    running: Counter[int] = Counter()
    most: Counter[int] = Counter()
    for line in lines:  # a process's lines are in its own order
        running[line.pid] += 1 if line.kind == "start" else -1
        most[line.pid] = max(most[line.pid], running[line.pid])
    assert set(most) == {worker.pid for worker in workers}  # all three took work
    assert max(most.values()) <= 4, most
