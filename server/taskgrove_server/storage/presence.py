"""Which replica has workers for which remote executor (PostgreSQL replicas; SQL only
here, the policy is engine/placement.py).

Each replica writes the executors its connected workers serve, with an expiry it renews
while they stay; a replica that dies stops renewing, and its rows no longer count once
they expire. Times are the database's clock, as for tree leases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.storage.leases import DB_NOW_US

PRESENCE_CHANNEL = "taskgrove_presence"
"""NOTIFY: a replica's workers serve other executors now (payload: its id)."""

_FORGET_OTHERS = text(
    """
    DELETE FROM executor_presence
    WHERE replica_id = :replica_id AND NOT (executor_id = ANY(CAST(:executors AS varchar[])))
    """
)
_UPSERT = text(
    f"""
    INSERT INTO executor_presence (replica_id, executor_id, workers, expires_us)
    SELECT :replica_id, executor_id, workers, {DB_NOW_US} + :ttl_us
    FROM unnest(CAST(:executors AS varchar[]), CAST(:workers AS integer[]))
        AS served(executor_id, workers)
    ON CONFLICT (replica_id, executor_id) DO UPDATE
        SET workers = EXCLUDED.workers, expires_us = EXCLUDED.expires_us
    """
)
_SERVING = text(
    f"""
    SELECT replica_id, executor_id FROM executor_presence
    WHERE executor_id = ANY(CAST(:executors AS varchar[])) AND replica_id <> :replica_id
      AND workers > 0 AND expires_us >= {DB_NOW_US}
    """
)


class ExecutorPresence:
    def __init__(self, db: AsyncEngine, replica_id: str, ttl_s: float) -> None:
        self._db = db
        self.replica_id = replica_id
        self._ttl_us = int(ttl_s * 1_000_000)

    async def publish(self, served: Mapping[str, int], *, changed: bool) -> None:
        """Say which executors this replica's workers serve now (executor -> workers),
        renewing the rows' expiry; `changed`: wake the other replicas (NOTIFY)."""
        executors = sorted(served)
        params = {
            "replica_id": self.replica_id,
            "ttl_us": self._ttl_us,
            "executors": executors,
            "workers": [served[executor] for executor in executors],
        }
        async with self._db.begin() as conn:
            await conn.execute(_FORGET_OTHERS, params)
            if executors:
                await conn.execute(_UPSERT, params)
            if changed:
                await conn.execute(select(func.pg_notify(PRESENCE_CHANNEL, self.replica_id)))

    async def serving(self, executors: Iterable[str]) -> dict[str, set[str]]:
        """Other replicas whose live workers serve any of `executors`: replica -> those
        it serves."""
        params = {"replica_id": self.replica_id, "executors": sorted(set(executors))}
        found: dict[str, set[str]] = {}
        async with self._db.connect() as conn:
            for replica_id, executor_id in await conn.execute(_SERVING, params):
                found.setdefault(replica_id, set()).add(executor_id)
        return found
