"""Several `taskgrove serve` replicas as subprocesses on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from taskgrove import Worker, WorkerContext
from taskgrove_server.testing import ServerProcess

from tests.conftest import pg_dsn
from tests.support.recorder import RECORD_FILE_ENV, install_recorder


class Replicas:
    """`count` replicas with the `record` executor, short tree leases, and their output
    in `folder` (`replica-N.log`); `record_file` is where the executor writes."""

    def __init__(
        self, db_url: str, folder: Path, count: int = 3, lease_s: float = 2.0, **env: str
    ) -> None:
        plugin = install_recorder(folder / "plugin")
        self.record_file = folder / "runs.txt"
        path = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p)
        self.processes = [
            ServerProcess(
                db_url,
                extra_env={
                    "PYTHONPATH": path,
                    RECORD_FILE_ENV: str(self.record_file),
                    "TASKGROVE_TREE_LEASE_SECONDS": str(lease_s),
                    **env,
                },
                log_path=folder / f"replica-{index}.log",
            )
            for index in range(count)
        ]

    def __getitem__(self, index: int) -> ServerProcess:
        return self.processes[index]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            if process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a test may have paused it
            process.stop(signal.SIGKILL)


@contextlib.contextmanager
def replicas(db_url: str, folder: Path, count: int = 3, **options: object) -> Iterator[Replicas]:
    group = Replicas(db_url, folder, count, **options)  # type: ignore[arg-type]
    try:
        group.start()
        yield group
    finally:
        group.stop()


def doubler() -> Worker:
    """A worker serving `w_double` ({"x": n} -> {"x": 2n})."""
    worker = Worker("doubler")

    @worker.executor("w_double", input_schema={"type": "object"})
    async def double(ctx: WorkerContext) -> Any:
        return {"x": ctx.inputs["x"] * 2}

    return worker


def port(address: str) -> str:
    """The port of HOST:PORT (a replica's default id ends with it)."""
    return address.rsplit(":", 1)[1]


async def fetch(db_url: str, query: str, *args: Any) -> list[Any]:
    """Rows of one query on the test database, over a connection of its own."""
    connection = await asyncpg.connect(pg_dsn(db_url))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def until_rows(db_url: str, query: str, *args: Any, limit_s: float = 10.0) -> list[Any]:
    """The rows of `query` once it has some (polled; TimeoutError after `limit_s`)."""
    async with asyncio.timeout(limit_s):
        while True:
            if rows := await fetch(db_url, query, *args):
                return rows
            await asyncio.sleep(0.05)


async def holder_of(db_url: str, root_id: str) -> str | None:
    """The replica id in the tree's lease row (None: no row)."""
    rows = await fetch(db_url, "SELECT replica_id FROM tree_leases WHERE root_id = $1", root_id)
    return str(rows[0]["replica_id"]) if rows else None


async def completed_attempts(db_url: str, task_id: str) -> list[int]:
    """The attempts of the task's stored `completed` events."""
    rows = await fetch(
        db_url,
        "SELECT attempt FROM task_events WHERE task_id = $1 AND status = 'completed'"
        " AND type = 'status_changed' ORDER BY sequence",
        task_id,
    )
    return [int(row["attempt"]) for row in rows]


async def stored_sequences(db_url: str, root_id: str) -> list[int]:
    """The sequences of the tree's stored events, in order."""
    rows = await fetch(
        db_url, "SELECT sequence FROM task_events WHERE root_id = $1 ORDER BY sequence", root_id
    )
    return [int(row["sequence"]) for row in rows]
