"""A request id means one operation across replicas: the same CreateTaskTree sent to
three replicas at once creates one tree, and every replica answers with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from taskgrove import AsyncClient

from tests.cluster.replicas import replicas
from tests.conftest import pg_dsn
from tests.support.recorder import recorded


async def test_one_request_id_sent_to_three_replicas_at_once_creates_one_tree(
    pg_db_url: str, tmp_path: Path
) -> None:
    requests = 20
    with replicas(pg_db_url, tmp_path, count=3, lease_s=15.0) as group:
        clients = [AsyncClient(process.address) for process in group.processes]
        try:
            tree = [
                {"id": "root", "name": "root"},
                recorded("a"),
            ]
            answers = await asyncio.gather(
                *(
                    client.create_task_tree(tree, execute=True, request_id=f"req-{index}")
                    for index in range(requests)
                    for client in clients
                )
            )
        finally:
            for client in clients:
                await client.close()
    for index in range(requests):
        same = answers[3 * index : 3 * index + 3]
        assert len({tuple(sorted(t.id for t in answer.values())) for answer in same}) == 1
    connection = await asyncpg.connect(pg_dsn(pg_db_url))
    try:
        roots = await connection.fetchval("SELECT count(*) FROM tasks WHERE parent_id IS NULL")
    finally:
        await connection.close()
    assert roots == requests
