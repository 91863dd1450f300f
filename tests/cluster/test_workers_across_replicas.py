"""A worker may connect to any replica: a tree whose tasks wait for an executor that only
another replica's workers serve goes to that replica (engine/placement.py), once nothing
of it runs where it is."""

from __future__ import annotations

from pathlib import Path

from taskgrove import AsyncClient, statuses

from tests.cluster.replicas import doubler, holder_of, port, replicas
from tests.support.recorder import read_runs, recorded
from tests.support.waiting import until, until_task
from tests.workers.running import connected


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
