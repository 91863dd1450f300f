"""Fresh PostgreSQL databases for benchmark scenarios, made and dropped with asyncpg on the
`postgres` maintenance database of the server named by a `postgresql+asyncpg://` URL.

The database name in the URL is only a prefix: every scenario gets
`<prefix>_<scenario>_<random>` and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import URL, make_url

DROP_ATTEMPTS = 40
"""Tries of DROP DATABASE, half a second apart (20 s)."""
CONNECT_TIMEOUT_S = 5.0
DEFAULT_PREFIX = "taskgrove_bench"


def _maintenance_dsn(url: URL) -> str:
    """A plain libpq DSN for asyncpg, on the `postgres` database."""
    return url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )


def database_name(prefix: str, scenario: str) -> str:
    """`<prefix>_<scenario>_<8 hex>`, lowercase, only [a-z0-9_], at most 63 characters."""
    clean = re.sub(r"[^a-z0-9_]+", "_", scenario.lower()).strip("_")
    suffix = uuid.uuid4().hex[:8]
    head = f"{prefix}_{clean}"[: 63 - len(suffix) - 1]
    return f"{head}_{suffix}"


class PgServer:
    """The PostgreSQL server of `url`; makes and drops scenario databases on it."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        if not self.url.drivername.startswith("postgresql"):
            raise ValueError(f"not a PostgreSQL URL: {url}")
        self.prefix = self.url.database or DEFAULT_PREFIX

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden (for logs and results)."""
        return self.url.render_as_string(hide_password=True)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(_maintenance_dsn(self.url), timeout=CONNECT_TIMEOUT_S)

    async def _check(self) -> str:
        connection = await self._connect()
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    def reachable(self) -> tuple[bool, str]:
        """(True, server version) or (False, why not)."""
        try:
            version = asyncio.run(asyncio.wait_for(self._check(), CONNECT_TIMEOUT_S * 2))
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            return False, f"{type(error).__name__}: {error}"
        return True, version

    async def _create(self, name: str) -> None:
        connection = await self._connect()
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    async def _drop(self, name: str) -> None:
        connection = await self._connect()
        try:
            # The server is stopped by then; FORCE ends anything left connected. It may
            # not end an autovacuum worker (a superuser's process) that a large scenario
            # woke: that one finishes or yields soon, so try again for a bounded while.
            for attempt in range(DROP_ATTEMPTS):
                try:
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    return
                except asyncpg.InsufficientPrivilegeError:
                    if attempt == DROP_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await connection.close()

    def create(self, scenario: str) -> tuple[str, str]:
        """A new empty database: (its name, its SQLAlchemy URL)."""
        name = database_name(self.prefix, scenario)
        asyncio.run(self._create(name))
        url = self.url.set(database=name).render_as_string(hide_password=False)
        return name, url

    def drop(self, name: str) -> None:
        asyncio.run(self._drop(name))

    @contextlib.contextmanager
    def fresh_database(self, scenario: str) -> Iterator[str]:
        """Yields the SQLAlchemy URL of a new database, dropped on exit."""
        name, url = self.create(scenario)
        try:
            yield url
        finally:
            self.drop(name)
