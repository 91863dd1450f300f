"""Pruning on PostgreSQL also forgets the lease rows of finished trees nobody holds and
commands older than the request-id retention; a tree run again after that gets a token
higher than any it had (tokens come from one sequence, never from the row)."""

from __future__ import annotations

import asyncio

import asyncpg
from taskgrove import AsyncClient, statuses
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig

from tests.conftest import pg_dsn
from tests.support.waiting import until_task


async def test_pruning_forgets_idle_lease_rows_and_old_commands(pg_db_url: str) -> None:
    config = ServerConfig(
        address="127.0.0.1:0",
        db_url=pg_db_url,
        event_retention_seconds=0,
        idempotency_retention_seconds=0,
    )
    server = TaskgroveServer(config)
    await server.start()
    db = await asyncpg.connect(pg_dsn(pg_db_url))

    async def leases() -> dict[str, tuple[str, int]]:
        rows = await db.fetch("SELECT root_id, replica_id, token FROM tree_leases")
        return {row["root_id"]: (row["replica_id"], row["token"]) for row in rows}

    try:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            spec = {"id": "t", "name": "sleep_executor", "inputs": {"seconds": 60}}
            first = (await client.create_task_tree([spec], execute=True))["t"].id
            held = (await client.create_task_tree([spec], execute=True))["t"].id
            for task_id in (first, held):
                await until_task(client, task_id, lambda t: t.status == statuses.IN_PROGRESS)
            token = (await leases())[first][1]
            await db.execute(
                "INSERT INTO cluster_commands (replica_id, sender_id, root_id, kind, payload,"
                " created_us) VALUES ('gone', 'gone', $1, 'cancel', '{}', 1)",
                first,
            )
            await client.cancel_task(first)
            for _ in range(1_500):  # bounded: the release commits right after the cancel
                if (await leases())[first][0] == "":
                    break
                await asyncio.sleep(0.01)
            await server.prune_events()
            after = await leases()
            assert first not in after  # finished and let go: forgotten
            assert after[held][0] != ""  # still held: kept
            assert await db.fetchval("SELECT count(*) FROM cluster_commands") == 0
            await client.retry_task(first)
            await until_task(client, first, lambda t: t.status == statuses.IN_PROGRESS)
            assert (await leases())[first][1] > token
    finally:
        await db.close()
        await server.stop(grace=1)
