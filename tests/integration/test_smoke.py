from __future__ import annotations

import asyncio

from taskgrove import AsyncClient, statuses


async def test_tree_runs_to_completion(client: AsyncClient) -> None:
    tasks = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task", "user_id": "u"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root", "inputs": {"seconds": 0}},
            {
                "id": "b",
                "name": "aggregate_results_executor",
                "parent_id": "root",
                "dependencies": [{"id": "a"}],
            },
        ],
        execute=True,
    )
    async with asyncio.timeout(10):
        root = await client.wait(tasks["root"].id)
    assert root.status == statuses.COMPLETED
    b = await client.get_task(tasks["b"].id)
    assert b.result["results"] == {tasks["a"].id: {"slept_seconds": 0, "result": None}}
