"""`system_info_executor` through a real server: real figures, and CPU use read without
blocking (a sampler primed at start, not a 0.1 s sleep per task)."""

from __future__ import annotations

import os

import psutil
from taskgrove import AsyncClient, statuses

from tests.support.waiting import wait_finished


async def test_a_hundred_cpu_tasks_at_once_each_report_real_figures(client: AsyncClient) -> None:
    tasks = [{"id": "root", "name": "root_task"}] + [
        {
            "id": f"cpu{i}",
            "name": "system_info_executor",
            "parent_id": "root",
            "inputs": {"resource": "cpu"},
        }
        for i in range(100)
    ]
    created = await client.create_task_tree(tasks, execute=True)
    root = await wait_finished(client, created["root"].id)
    assert root.status == statuses.COMPLETED
    results = [task.result for task in await client.get_task_tree(root.id) if not task.is_group]
    assert len(results) == 100
    for result in results:
        assert result["logical_cores"] == psutil.cpu_count(logical=True) == os.cpu_count()
        assert 0.0 <= result["percent"] <= 100.0
        # A figure over a real window of time, since the server started at the latest.
        assert result["sampled_over_seconds"] > 0


async def test_memory_and_disk_figures_are_the_machines(client: AsyncClient) -> None:
    tasks = [{"id": "root", "name": "root_task"}] + [
        {"id": r, "name": "system_info_executor", "parent_id": "root", "inputs": {"resource": r}}
        for r in ("memory", "disk", "all")
    ]
    created = await client.create_task_tree(tasks, execute=True)
    await wait_finished(client, created["root"].id)
    memory = (await client.get_task(created["memory"].id)).result
    disk = (await client.get_task(created["disk"].id)).result
    everything = (await client.get_task(created["all"].id)).result
    assert memory["total_bytes"] == psutil.virtual_memory().total
    assert 0 < memory["available_bytes"] <= memory["total_bytes"]
    assert disk["total_bytes"] == psutil.disk_usage("/").total
    assert set(everything) == {"cpu", "memory", "disk"}
    assert everything["cpu"]["cores"] >= 1
