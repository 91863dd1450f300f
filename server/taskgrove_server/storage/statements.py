"""Write statements queued on the `Writer` besides inserts and state updates."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from taskgrove_server.storage.schema import tasks
from taskgrove_server.storage.writer import Statement


def mark_has_children(parent_id: str) -> Statement:
    async def run(conn: AsyncConnection) -> None:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id == parent_id, tasks.c.has_children.is_(False))
            .values(has_children=True)
        )

    return run
