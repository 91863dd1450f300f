"""Every RPC works on any replica: what changes a tree another replica holds is run by
that replica (a cancel sent to A interrupts the executor running on B), errors come back
as they would from the holder, and replicas racing for one tree run it once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from taskgrove import AsyncClient, TaskgroveError, statuses

from tests.cluster.replicas import doubler, holder_of, port, replicas
from tests.support.recorder import read_runs, recorded
from tests.support.waiting import until, until_task
from tests.workers.running import connected


async def test_a_tree_created_on_a_runs_on_b_is_watched_on_c_and_cancelled_through_a(
    pg_db_url: str, tmp_path: Path
) -> None:
    with replicas(pg_db_url, tmp_path, count=3, lease_s=2.0) as group:
        a, b, c = group[0], group[1], group[2]
        async with (
            AsyncClient(a.address) as on_a,
            AsyncClient(b.address) as on_b,
            AsyncClient(c.address) as on_c,
        ):
            created = await on_a.create_task_tree(
                [
                    {"id": "root", "name": "root"},
                    recorded("long", 60),
                    recorded("after", dependencies=["long"]),
                ]
            )
            root_id, long_id = created["root"].id, created["long"].id
            seen: list[tuple[str, str]] = []

            async def watch() -> None:
                async for event in on_c.watch(root_id=root_id):
                    seen.append((event.task_id, event.status))

            watcher = asyncio.create_task(watch())
            await on_b.execute_task(root_id)
            await until(lambda: bool(read_runs(group.record_file).get(long_id)))
            assert [run.pid for run in read_runs(group.record_file)[long_id]] == [b.pid]
            assert port(await holder_of(pg_db_url, root_id) or "") == port(b.address)

            explained = await on_c.explain_task(created["after"].id)  # answered by B
            assert [w.id for w in explained.waiting_dependencies] == [long_id]

            cancelled = await on_a.cancel_task(long_id)
            assert long_id in cancelled
            task = await until_task(on_c, long_id, lambda t: t.status == statuses.CANCELLED)
            assert task.status == statuses.CANCELLED
            await until(lambda: (long_id, statuses.CANCELLED) in seen)
            watcher.cancel()
            # B's executor was interrupted: its run never ended.
            assert [run.ended for run in read_runs(group.record_file)[long_id]] == [False]


async def test_errors_of_an_operation_run_by_the_holder_come_back_unchanged(
    pg_db_url: str, tmp_path: Path
) -> None:
    with replicas(pg_db_url, tmp_path, count=2, lease_s=2.0) as group:
        async with AsyncClient(group[0].address) as on_a, AsyncClient(group[1].address) as on_b:
            created = await on_a.create_task_tree(
                [
                    {"id": "root", "name": "root"},
                    recorded("long", 60),
                    recorded("later", dependencies=["long"]),
                ],
                execute=True,
            )
            later = created["later"]
            with pytest.raises(TaskgroveError) as stale:
                await on_b.update_task(later.id, etag="999", inputs={"seconds": 1})
            assert stale.value.reason == "ETAG_MISMATCH"
            with pytest.raises(TaskgroveError) as running:
                await on_b.retry_task(created["long"].id)
            assert running.value.reason == "TASK_NOT_RETRYABLE"
            updated = await on_b.update_task(later.id, etag=later.etag, inputs={"seconds": 0.5})
            assert updated.inputs == {"seconds": 0.5}
            assert (await on_a.get_task(later.id)).inputs == {"seconds": 0.5}


async def test_replicas_racing_to_execute_the_same_trees_run_each_task_once(
    pg_db_url: str, tmp_path: Path
) -> None:
    trees = 300
    # Leases long enough that no replica, however starved on 2 cores, loses one here:
    # what races is the acquiring, not the expiry.
    with replicas(pg_db_url, tmp_path, count=3, lease_s=15.0) as group:
        clients = [AsyncClient(process.address) for process in group.processes]
        try:
            created = await asyncio.gather(
                *(
                    clients[i % 3].create_task_tree([recorded("t", 0.01, parent=None)])
                    for i in range(trees)
                )
            )
            ids = [tree["t"].id for tree in created]
            rng = random.Random(7)
            calls = []
            for task_id in ids:
                first, second = rng.sample(clients, 2)  # two replicas race for each tree
                calls += [first.execute_task(task_id), second.execute_task(task_id)]
            await asyncio.gather(*calls)
            for task_id in ids:
                await until_task(clients[0], task_id, lambda t: t.status == statuses.COMPLETED)
        finally:
            for client in clients:
                await client.close()
        runs = read_runs(group.record_file)
        assert sorted(runs) == sorted(ids)
        assert [task_id for task_id, task_runs in runs.items() if len(task_runs) != 1] == []
        holders = {run.pid for task_runs in runs.values() for run in task_runs}
        assert len(holders) > 1  # the trees were spread over the replicas


async def test_a_task_waits_for_a_dependency_in_a_tree_another_replica_runs(
    pg_db_url: str, tmp_path: Path
) -> None:
    with replicas(pg_db_url, tmp_path, count=2, lease_s=15.0) as group:
        a, b = group[0], group[1]
        async with AsyncClient(a.address) as on_a, AsyncClient(b.address) as on_b:
            first = await on_a.create_task_tree(
                [recorded("x", 1.0, parent=None)],
                execute=True,
            )
            x_id = first["x"].id
            second = await on_b.create_task_tree(
                [recorded("y", parent=None, dependencies=[x_id])],
                execute=True,
            )
            y_id = second["y"].id
            y = await until_task(on_b, y_id, lambda t: t.status == statuses.COMPLETED)
        runs = read_runs(group.record_file)
        assert [run.pid for run in runs[x_id]] == [a.pid]
        assert [run.pid for run in runs[y_id]] == [b.pid] == [y.result["pid"]]
        lines = group.record_file.read_text().splitlines()
        assert lines.index(f"end {x_id} 1 {a.pid}") < lines.index(f"start {y_id} 1 {b.pid}")


async def test_a_tree_for_a_worker_on_b_is_created_on_a_and_executed_through_b(
    pg_db_url: str, tmp_path: Path
) -> None:
    """A replica learns the executors a worker registered on another one when a create
    names them; the tree runs on the replica it is executed through, where the worker is."""
    with replicas(pg_db_url, tmp_path, count=2, lease_s=15.0) as group:
        a, b = group[0], group[1]
        async with (
            connected(doubler(), b.address),
            AsyncClient(a.address) as on_a,
            AsyncClient(b.address) as on_b,
        ):
            created = await on_a.create_task_tree(
                [{"id": "t", "name": "t", "executor": "w_double", "inputs": {"x": 21}}]
            )
            task_id = created["t"].id
            await on_b.execute_task(task_id)
            done = await until_task(on_a, task_id, lambda t: t.status == statuses.COMPLETED)
            assert done.result == {"x": 42}


async def test_a_task_created_through_a_under_a_tree_b_runs_is_created_by_b(
    pg_db_url: str, tmp_path: Path
) -> None:
    """B holds the tree in memory: a task added to it through A must reach B's memory
    (the insert is refused on A and sent to B), so B can execute it and the group
    above it waits for it."""
    with replicas(pg_db_url, tmp_path, count=2, lease_s=15.0) as group:
        a, b = group[0], group[1]
        async with AsyncClient(a.address) as on_a, AsyncClient(b.address) as on_b:
            created = await on_b.create_task_tree(
                [
                    {"id": "root", "name": "root"},
                    recorded("long", 1.0),
                ],
                execute=True,
            )
            root_id = created["root"].id
            await until(lambda: bool(read_runs(group.record_file).get(created["long"].id)))
            added = await on_a.create_task(
                name="added", executor="record", parent_id=root_id, inputs={"seconds": 0}
            )
            await on_a.execute_task(added.id)  # B runs it: B's memory has it
            done = await until_task(on_b, added.id, lambda t: t.status == statuses.COMPLETED)
            assert done.result == {"pid": b.pid}
            root = await until_task(on_a, root_id, lambda t: t.status in statuses.TERMINAL)
            assert root.status == statuses.COMPLETED
            assert root.end_time is not None and done.end_time is not None
            assert root.end_time >= done.end_time  # the group waited for the added task
