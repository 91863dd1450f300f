"""A worker may connect to any replica: a tree whose tasks wait for an executor that only
another replica's workers serve goes to that replica (engine/placement.py), once nothing
of it runs where it is."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from taskgrove import AsyncClient, statuses

from tests.cluster.replicas import doubler, holder_of, port, replicas, until_rows
from tests.support.recorder import read_runs, recorded
from tests.support.waiting import until, until_task
from tests.workers.running import connected, started, stopped


async def test_a_tree_waiting_on_a_for_a_worker_on_b_goes_to_b(
    pg_db_url: str, tmp_path: Path
) -> None:
    with replicas(pg_db_url, tmp_path, count=2, lease_s=15.0) as group:
        a, b = group[0], group[1]
        async with connected(doubler(), b.address):
            pass  # registered once: every replica may now accept its tasks
        async with AsyncClient(a.address) as on_a:
            created = await on_a.create_task_tree(
                [
                    {"id": "root", "name": "root"},
                    *(
                        {
                            "id": f"t{i}",
                            "name": f"t{i}",
                            "parent_id": "root",
                            "executor": "w_double",
                            "inputs": {"x": i},
                        }
                        for i in range(5)
                    ),
                ]
            )
            root_id = created["root"].id
            await on_a.execute_task(root_id)
            # No worker anywhere: the tree waits on A, which says why.
            explained = await on_a.explain_task(created["t0"].id)
            assert "NO_WORKER" in explained.reasons
            assert port(await holder_of(pg_db_url, root_id) or "") == port(a.address)

            async with connected(doubler(), b.address):
                for i in range(5):
                    done = await until_task(
                        on_a, created[f"t{i}"].id, lambda t: t.status == statuses.COMPLETED
                    )
                    assert done.result["x"] == 2 * i
                    assert done.attempt == 1
            # Only B's worker could have run them: the tree went to B.
            root = await until_task(on_a, root_id, lambda t: t.status == statuses.COMPLETED)
            assert root.progress == 1.0


async def test_a_tree_moves_to_the_worker_once_what_runs_where_it_is_has_ended(
    pg_db_url: str, tmp_path: Path
) -> None:
    """A's own task is not interrupted for the move: it runs once, to its end, on A; the
    worker's task, ready meanwhile, runs on B after it."""
    with replicas(pg_db_url, tmp_path, count=2, lease_s=15.0) as group:
        a, b = group[0], group[1]
        async with connected(doubler(), b.address), AsyncClient(a.address) as on_a:
            created = await on_a.create_task_tree(
                [
                    {"id": "root", "name": "root"},
                    recorded("local", 1.5),
                    {
                        "id": "remote",
                        "name": "remote",
                        "parent_id": "root",
                        "executor": "w_double",
                        "inputs": {"x": 4},
                    },
                    recorded("after", dependencies=["remote"]),
                ]
            )
            root_id = created["root"].id
            await on_a.execute_task(root_id)
            await until(lambda: bool(read_runs(group.record_file).get(created["local"].id)))
            explained = await on_a.explain_task(created["remote"].id)
            assert "NO_WORKER" in explained.reasons  # A has no worker; the tree stays
            root = await until_task(on_a, root_id, lambda t: t.status == statuses.COMPLETED)
            assert root.status == statuses.COMPLETED
            runs = read_runs(group.record_file)
            assert [(run.pid, run.ended) for run in runs[created["local"].id]] == [(a.pid, True)]
            assert [run.pid for run in runs[created["after"].id]] == [b.pid]
            remote = await on_a.get_task(created["remote"].id)
            assert remote.result["x"] == 8 and remote.attempt == 1
            local = await on_a.get_task(created["local"].id)
            assert local.attempt == 1 and local.end_time is not None
            assert remote.start_time is not None and remote.start_time >= local.end_time


async def test_a_tree_handed_to_a_replica_that_dies_before_adopting_it_runs_elsewhere(
    pg_db_url: str, tmp_path: Path
) -> None:
    """A hands the tree to B, which is stopped and then killed before it adopts it: the
    hand-over keeps the lease's expiry, so the tree is swept like any other lease of a
    dead replica, and goes on to the worker that connects to C."""
    with replicas(pg_db_url, tmp_path, count=3, lease_s=4.0) as group:
        a, b, c = group[0], group[1], group[2]
        on_b_worker = doubler()
        running = await started(on_b_worker, b.address)
        await until_rows(pg_db_url, "SELECT 1 FROM executor_presence WHERE workers > 0")
        os.kill(b.pid, signal.SIGSTOP)
        async with AsyncClient(a.address) as on_a:
            created = await on_a.create_task_tree(
                [{"id": "t", "name": "t", "executor": "w_double", "inputs": {"x": 5}}]
            )
            task_id = created["t"].id
            await on_a.execute_task(task_id)
            # Handed to B, which cannot adopt it.
            await until_rows(
                pg_db_url, "SELECT 1 FROM tree_leases WHERE root_id = $1 AND adopt", task_id
            )
            assert port(await holder_of(pg_db_url, task_id) or "") == port(b.address)
            os.kill(b.pid, signal.SIGKILL)
            await stopped(on_b_worker, running)
            async with connected(doubler(), c.address):
                done = await until_task(
                    on_a, task_id, lambda t: t.status == statuses.COMPLETED, limit_s=30
                )
            assert done.result == {"x": 10} and done.attempt == 1
