"""Shared fixtures: a real server (in-process or as a subprocess) on 127.0.0.1 with a
temporary SQLite database, and clients connected to it. With TASKGROVE_TEST_PG_URL set
(e.g. postgresql+asyncpg://taskgrove:taskgrove@127.0.0.1:5432), `pg_db_url`, `pg_server`
and `pg_client` do the same on a fresh PostgreSQL database; without it they skip."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from taskgrove import AsyncClient
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.testing import ServerProcess, sqlite_url

# `taskgrove serve` started by a test serves no web console unless the test asks for one:
# servers run side by side here (and beside other checkouts' tests), the default port once.
os.environ["TASKGROVE_HTTP"] = "off"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "taskgrove.db")


@pytest.fixture
async def server(db_url: str) -> AsyncIterator[TaskgroveServer]:
    """An in-process server on a free loopback port."""
    instance = TaskgroveServer(ServerConfig(address="127.0.0.1:0", db_url=db_url))
    await instance.start()
    yield instance
    await instance.stop(grace=1)


@pytest.fixture
async def client(server: TaskgroveServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(f"127.0.0.1:{server.port}") as connected:
        yield connected


@pytest.fixture
def command_dir() -> Iterator[Path]:
    """A directory the command user may write to (commands run as `nobody` when the tests
    run as root, and pytest's tmp_path is private to root), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="taskgrove-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_process(db_url: str) -> Iterator[ServerProcess]:
    """`taskgrove serve` as a real subprocess (started and stopped by PID)."""
    proc = ServerProcess(db_url)
    proc.start()
    yield proc
    proc.stop()


class ServerFactory:
    """Starts in-process servers with a chosen configuration and registry; every server
    (and every client made through `client()`) is stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._count = 0
        self._servers: list[TaskgroveServer] = []
        self._stopped: set[int] = set()
        self._clients: list[AsyncClient] = []

    async def __call__(
        self,
        *,
        registry: ExecutorRegistry | None = None,
        db_url: str | None = None,
        max_concurrency: int = 256,
        executor_limits: dict[str, int] | None = None,
        **config_fields: Any,
    ) -> TaskgroveServer:
        if db_url is None:
            self._count += 1
            db_url = sqlite_url(self._tmp_path / f"server-{self._count}.db")
        config = ServerConfig(
            address="127.0.0.1:0",
            db_url=db_url,
            max_concurrency=max_concurrency,
            executor_limits=dict(executor_limits or {}),
            **config_fields,
        )
        instance = TaskgroveServer(config, registry=registry)
        await instance.start()
        self._servers.append(instance)
        return instance

    def client(self, instance: TaskgroveServer) -> AsyncClient:
        """A client of `instance`, closed at teardown."""
        connected = AsyncClient(f"127.0.0.1:{instance.port}")
        self._clients.append(connected)
        return connected

    async def stop(self, instance: TaskgroveServer, grace: float = 1) -> None:
        """Stop one server now (teardown then leaves it alone)."""
        if id(instance) not in self._stopped:
            self._stopped.add(id(instance))
            await instance.stop(grace=grace)

    async def close(self) -> None:
        for connected in self._clients:
            await connected.close()
        for instance in reversed(self._servers):
            await self.stop(instance)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """`await make_server(registry=..., max_concurrency=..., executor_limits=...)` starts an
    in-process server on a free loopback port with its own SQLite file (or `db_url`)."""
    factory = ServerFactory(tmp_path)
    yield factory
    await factory.close()


# ---------------------------------------------------------------------------- PostgreSQL

PG_URL_ENV = "TASKGROVE_TEST_PG_URL"


def pg_dsn(url: str, database: str | None = None) -> str:
    """A plain libpq DSN (for asyncpg) from a SQLAlchemy `postgresql+asyncpg://` URL,
    optionally on another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
async def pg_db_url() -> AsyncIterator[str]:
    """The SQLAlchemy URL of a fresh, uniquely named PostgreSQL database on the server of
    $TASKGROVE_TEST_PG_URL (made on the `postgres` database, dropped at teardown after
    ending its connections). Skips when the variable is unset."""
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"{PG_URL_ENV} is not set")
    import asyncpg

    name = f"taskgrove_test_{uuid.uuid4().hex[:16]}"
    maintenance = pg_dsn(base, "postgres")
    connection = await asyncpg.connect(maintenance, timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        connection = await asyncpg.connect(maintenance, timeout=10)
        try:
            # Plain DROP, not WITH (FORCE): FORCE must be allowed to end every session,
            # and an autovacuum worker on the database (busy counter rows invite one)
            # is the superuser's (InsufficientPrivilegeError, seen once); a plain DROP
            # stops autovacuum by itself. Our own sessions are ended first, and again
            # if one was still closing.
            for _ in range(50):
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()"
                    " AND backend_type = 'client backend' AND usename = current_user",
                    name,
                )
                try:
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    break
                except asyncpg.ObjectInUseError:
                    await asyncio.sleep(0.1)
        finally:
            await connection.close()


@pytest.fixture
async def pg_server(pg_db_url: str) -> AsyncIterator[TaskgroveServer]:
    """An in-process server on a free loopback port, on a fresh PostgreSQL database."""
    instance = TaskgroveServer(ServerConfig(address="127.0.0.1:0", db_url=pg_db_url))
    await instance.start()
    yield instance
    await instance.stop(grace=1)


@pytest.fixture
async def pg_client(pg_server: TaskgroveServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(f"127.0.0.1:{pg_server.port}") as connected:
        yield connected
