"""Commands between replicas, as rows of `cluster_commands` (SQL only here; the policy is
engine/routing.py).

A replica that must change a tree another replica holds inserts a command addressed to
that replica and waits for its answer in the same row. The holder takes a command by
marking it taken (so a sender can withdraw only a command nobody took), runs it, and
writes the answer. NOTIFY on `taskgrove_commands` and `taskgrove_answers` wakes both
sides; both also poll, so a lost notification only delays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.clock import now_us
from taskgrove_server.storage.schema import cluster_commands

COMMANDS_CHANNEL = "taskgrove_commands"
"""Payload: the addressed replica's id."""
ANSWERS_CHANNEL = "taskgrove_answers"
"""Payload: the answered command's id."""

_TAKEN: dict[str, Any] = {"taken": True}

_TAKE = text(
    """
    UPDATE cluster_commands SET result = CAST(:taken AS JSON)
    WHERE id IN (
        SELECT id FROM cluster_commands WHERE replica_id = :replica_id AND result IS NULL
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING id, sender_id, root_id, kind, payload
    """
)


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    sender_id: str
    root_id: str
    kind: str
    payload: dict[str, Any]


class ClusterCommands:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def send(
        self, replica_id: str, sender_id: str, root_id: str, kind: str, payload: dict[str, Any]
    ) -> int:
        async with self._db.begin() as conn:
            command_id = await conn.scalar(
                insert(cluster_commands)
                .values(
                    replica_id=replica_id,
                    sender_id=sender_id,
                    root_id=root_id,
                    kind=kind,
                    payload=payload,
                    created_us=now_us(),
                )
                .returning(cluster_commands.c.id)
            )
            await conn.execute(select(func.pg_notify(COMMANDS_CHANNEL, replica_id)))
        return int(command_id)

    async def take(self, replica_id: str, limit: int = 100) -> list[Command]:
        """The commands addressed to this replica that nobody took yet, now taken."""
        async with self._db.begin() as conn:
            rows = await conn.execute(
                _TAKE, {"replica_id": replica_id, "limit": limit, "taken": json.dumps(_TAKEN)}
            )
            return [Command(int(r[0]), r[1], r[2], r[3], _json(r[4])) for r in rows]

    async def answer(self, command_id: int, result: dict[str, Any]) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(cluster_commands)
                .where(cluster_commands.c.id == command_id)
                .values(result=result)
            )
            await conn.execute(select(func.pg_notify(ANSWERS_CHANNEL, str(command_id))))

    async def answer_of(self, command_id: int) -> dict[str, Any] | None:
        """The command's answer (None while unanswered); the row goes once read."""
        async with self._db.begin() as conn:
            raw = await conn.scalar(
                select(cluster_commands.c.result).where(cluster_commands.c.id == command_id)
            )
            result = None if raw is None else _json(raw)
            if result is None or result == _TAKEN:
                return None
            await conn.execute(delete(cluster_commands).where(cluster_commands.c.id == command_id))
            return result

    async def withdraw(self, command_id: int) -> bool:
        """Take back a command its replica has not taken (True), else False."""
        async with self._db.begin() as conn:
            gone = await conn.execute(
                delete(cluster_commands).where(
                    cluster_commands.c.id == command_id, cluster_commands.c.result.is_(None)
                )
            )
            return bool(gone.rowcount)


def _json(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return dict(loaded)
