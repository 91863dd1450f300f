"""One request id at a time across replicas: PostgreSQL advisory locks.

Idempotency (service/idempotency.py) reads the stored answer of a request id, runs the
request and stores its answer. Two replicas given the same request id at once would both
find nothing stored and both run it, so on PostgreSQL that sequence runs under a
session-level advisory lock on the request id, taken with `pg_try_advisory_lock` (which
never blocks the connection) on one connection of this replica's own. A replica that
dies loses its session and with it its locks, so nobody waits for a dead one. If the
connection drops while a lock is held, the lock is gone too: for that moment two
replicas could run the same request id (logged); the connection is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

_WAIT_FIRST_S = 0.005
_WAIT_MAX_S = 0.1


def lock_key(request_id: str) -> int:
    """The advisory lock's 64-bit key for a stored request id."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big", signed=True)


class RequestLocks:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: Any = None
        self._use = asyncio.Lock()
        """asyncpg runs one statement at a time per connection."""

    async def _run(self, query: str, key: int) -> bool:
        import asyncpg  # type: ignore[import-untyped]  # present whenever PostgreSQL is

        async with self._use:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self._dsn)
            try:
                return bool(await self._connection.fetchval(query, key))
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                log.warning("the request-id lock connection dropped; its locks are gone")
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
                raise

    @contextlib.asynccontextmanager
    async def held(self, request_id: str) -> AsyncIterator[None]:
        """Hold the request id's lock (waiting, bounded by the caller's deadline)."""
        key = lock_key(request_id)
        delay = _WAIT_FIRST_S
        while not await self._run("SELECT pg_try_advisory_lock($1)", key):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _WAIT_MAX_S)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dropped connection released it
                await self._run("SELECT pg_advisory_unlock($1)", key)

    async def close(self) -> None:
        async with self._use:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
