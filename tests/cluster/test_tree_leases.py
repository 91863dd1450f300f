"""Replicas on one PostgreSQL hold trees by lease: a replica paused past its lease
cannot change a tree another one took over, and a killed replica's trees are finished
by the others (each task run again only where a killed replica had run it)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from taskgrove import AsyncClient, statuses

from tests.cluster.replicas import (
    completed_attempts,
    holder_of,
    port,
    replicas,
    stored_sequences,
)
from tests.support.recorder import read_runs, record_tree
from tests.support.waiting import until, until_task


async def test_a_paused_replica_cannot_finish_a_task_another_took_over(
    pg_db_url: str, tmp_path: Path
) -> None:
    with replicas(pg_db_url, tmp_path, count=2, lease_s=1.5) as group:
        a, b = group[0], group[1]
        async with AsyncClient(a.address) as on_a, AsyncClient(b.address) as on_b:
            created = await on_a.create_task_tree(record_tree(1, seconds=3.0), execute=True)
            task_id = created["t0"].id

            def started_by(pid: int) -> bool:
                return any(run.pid == pid for run in read_runs(group.record_file).get(task_id, []))

            await until(lambda: started_by(a.pid))
            os.kill(a.pid, signal.SIGSTOP)
            await until(lambda: started_by(b.pid), limit_s=20)
            done = await until_task(
                on_b, task_id, lambda t: t.status == statuses.COMPLETED, limit_s=20
            )
            assert done.result == {"pid": b.pid}
            assert done.attempt == 2
            os.kill(a.pid, signal.SIGCONT)
            # A wakes up with its attempt's time long gone: it either writes the outcome
            # (refused by the fence) or learns from its renewal that the tree moved.
            await until(
                lambda: (
                    "held by another replica" in a.log_tail(200)
                    or "taken over by another replica" in a.log_tail(200)
                ),
                limit_s=20,
            )
            # Wait for A's writer to be past that batch: a task A creates is durable.
            await on_a.create_task(name="sleep_executor", inputs={"seconds": 0})
            after = await on_b.get_task(task_id)
            assert after == done  # nothing A did after the takeover is visible
            assert (await on_a.get_task(task_id)) == done
            assert await completed_attempts(pg_db_url, task_id) == [2]


async def test_trees_of_killed_replicas_are_finished_by_the_survivors(
    pg_db_url: str, tmp_path: Path
) -> None:
    """3 replicas, a 2,000-task tree; its holder is killed at a quarter, the next holder
    at 60%: the last replica finishes it. A task runs again only where a killed replica
    had run it, and watchers saw every event of the tree once, in order."""
    n = 2_000
    options = {"lease_s": 2.0, "TASKGROVE_MAX_CONCURRENCY": "64"}
    with replicas(pg_db_url, tmp_path, count=3, **options) as group:
        async with AsyncClient(group[0].address) as client:
            created = await client.create_task_tree(record_tree(n, seconds=0.01))
        root_id = created["root"].id
        seen: dict[int, list[int]] = {index: [] for index in range(3)}
        clients = [AsyncClient(process.address) for process in group.processes]

        async def watch(index: int) -> None:
            # No reconnecting to a killed replica: a watcher there just stops.
            async for event in clients[index].watch(root_id=root_id, max_reconnects=0):
                seen[index].append(event.sequence)

        watchers = [asyncio.create_task(watch(index)) for index in range(3)]
        try:
            # A watcher replays from the start: one that opens late still sees everything.
            await clients[1].execute_task(root_id)
            killed: list[int] = []

            def ran() -> int:
                return sum(len(runs) for runs in read_runs(group.record_file).values())

            for share in (0.25, 0.6):
                await until(lambda share=share: ran() >= n * share, limit_s=120)
                holder = await holder_of(pg_db_url, root_id)
                assert holder is not None
                victim = next(p for p in group.processes if port(p.address) == port(holder))
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)
            last = next(i for i, p in enumerate(group.processes) if p.pid not in killed)
            root = await until_task(
                clients[last], root_id, lambda t: t.status in statuses.TERMINAL, limit_s=120
            )
            assert root.status == statuses.COMPLETED
            tasks = {task.id: task for task in await clients[last].get_task_tree(root_id)}
            stored = await stored_sequences(pg_db_url, root_id)
            await until(lambda: seen[last][-1:] == stored[-1:], limit_s=30)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for c in clients:
                await c.close()
        # The survivor's watcher saw the whole history; the others a gap-free prefix.
        assert seen[last] == stored
        second = next(i for i, p in enumerate(group.processes) if p.pid == killed[1])
        assert seen[second] == stored[: len(seen[second])]
        runs = read_runs(group.record_file)
        ids = [created[f"t{index}"].id for index in range(n)]
        assert set(runs) == set(ids)
        for task_id in ids:
            task_runs = runs[task_id]
            final = task_runs[-1]
            assert final.ended and tasks[task_id].result == {"pid": final.pid}
            # A task runs again only after a run on a replica that was killed.
            assert all(run.pid in killed for run in task_runs[:-1]), task_runs
        assert sum(len(r) > 1 for r in runs.values()) <= 2 * 64  # at most what was running


async def test_a_replica_that_stops_hands_its_tree_over_at_once(
    pg_db_url: str, tmp_path: Path
) -> None:
    """SIGTERM: the replica hands its attempts back and expires its leases; the other
    takes the tree over without waiting out a lease (a minute here) and finishes it."""
    options = {"lease_s": 60.0, "TASKGROVE_MAX_CONCURRENCY": "4"}
    with replicas(pg_db_url, tmp_path, count=2, **options) as group:
        a, b = group[0], group[1]
        async with AsyncClient(a.address) as on_a:
            created = await on_a.create_task_tree(record_tree(40, seconds=0.2), execute=True)
        root_id = created["root"].id
        await until(lambda: len(read_runs(group.record_file)) >= 4)
        a_pid = a.pid
        assert a.stop() == 0
        async with AsyncClient(b.address) as on_b:
            root = await until_task(
                on_b, root_id, lambda t: t.status in statuses.TERMINAL, limit_s=30
            )
        assert root.status == statuses.COMPLETED
        pids = {run.pid for runs in read_runs(group.record_file).values() for run in runs}
        assert pids == {a_pid, b.pid}
