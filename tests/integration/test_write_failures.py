"""Write-path failures through a real server: a write the database refuses fails only
its own request, storage that fails (disk full) is waited out without a restart, and a
second server on one SQLite file is refused. Memory never runs ahead of the database:
what is stored equals what was published, and a restart changes nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from support.database import committed, stored_tasks
from support.trees import sleep_tree
from support.waiting import until, wait_finished
from taskgrove import (
    AsyncClient,
    InvalidArgumentError,
    TaskgroveError,
    reasons,
    statuses,
    task_message,
)
from taskgrove._errors import from_rpc_error
from taskgrove.v1.task_service_pb2 import CreateTaskRequest
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig
from taskgrove_server.storage.database import DatabaseInUse, open_database
from taskgrove_server.storage.migrations import migrate


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def prepared_database(path: Path, *statements: str) -> str:
    """A migrated SQLite file with extra statements run on it (e.g. a refusing trigger)."""
    url = sqlite_url(path)
    engine = open_database(url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()
    return url


REFUSE_POISON = (
    "CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks WHEN NEW.name = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
)


async def serving(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def assert_stored_equals_published(db_url: str, root_id: str) -> dict[str, dict[str, Any]]:
    """Every stored task's status is the one its last committed event announced."""
    stored = stored_tasks(db_url, root_id=root_id)
    last: dict[str, str] = {}
    for event in committed(db_url, root_id=root_id):
        last[event["task_id"]] = event["status"]
    assert {task_id: row["status"] for task_id, row in stored.items()} == last
    return stored


@pytest.fixture
async def started() -> AsyncIterator[list[TaskgroveServer]]:
    """Servers a test starts; stopped at teardown."""
    servers: list[TaskgroveServer] = []
    yield servers
    for server in reversed(servers):
        await server.stop(grace=1)


async def start(started: list[TaskgroveServer], url: str, **config: Any) -> TaskgroveServer:
    server = TaskgroveServer(ServerConfig(address="127.0.0.1:0", db_url=url, **config))
    await server.start()
    started.append(server)
    return server


# ---------------------------------------------------------------------- refused writes


async def test_a_poison_write_fails_only_its_request_while_a_tree_runs(
    tmp_path: Path, started: list[TaskgroveServer]
) -> None:
    """The issue's scenario, smaller: a tree runs, clients create tasks, and one client
    keeps sending what the database refuses (a trigger) or validation refuses (a timeout
    of 2^62 s). Every innocent request succeeds, the tree completes, what is stored is
    what was published, and a restart changes nothing."""
    url = await prepared_database(tmp_path / "poison.db", REFUSE_POISON)
    server = await start(started, url, max_concurrency=32)
    address = f"127.0.0.1:{server.port}"
    async with AsyncClient(address) as client:
        tree = await client.create_task_tree(
            sleep_tree(300, seconds=lambda i: (i % 7) / 1000), execute=True, basic=True
        )
        root = tree["root"].id
        running = True
        innocent: list[str] = []
        refusals: list[TaskgroveError] = []

        async def create_innocent(index: int) -> None:
            for round_ in range(1000):
                if not running:
                    return
                task = await client.create_task(name=f"innocent-{index}-{round_}", user_id="u")
                innocent.append(task.id)

        async def create_poison() -> None:
            for round_ in range(1000):
                if not running:
                    return
                try:
                    if round_ % 2:
                        await client.create_task(name="poison", user_id="u")
                    else:  # a timeout no database column (or timedelta) holds
                        message = task_message(name="sleep_executor", user_id="u")
                        message.timeout.seconds = 2**62
                        await client.stub.CreateTask(CreateTaskRequest(task=message))
                except TaskgroveError as error:
                    refusals.append(error)
                except grpc.aio.AioRpcError as error:
                    refusals.append(from_rpc_error(error))
                await asyncio.sleep(0.02)

        async def finish() -> None:
            nonlocal running
            await wait_finished(client, root, limit_s=60)
            running = False

        await asyncio.gather(finish(), *(create_innocent(i) for i in range(3)), create_poison())

        assert (await client.get_task(root)).status == statuses.COMPLETED
        assert len(innocent) > 0 and len(refusals) >= 2
        assert all(isinstance(error, InvalidArgumentError) for error in refusals), refusals
        assert {error.reason for error in refusals} == {
            reasons.WRITE_REFUSED,
            reasons.INVALID_TIMEOUT,
        }
        stored = stored_tasks(url)
        assert all(task_id in stored for task_id in innocent)
        assert not any(row["name"] == "poison" for row in stored.values())
        assert await serving(address)
    assert server.engine.running == 0
    before = assert_stored_equals_published(url, root)
    assert not any(row["status"] == statuses.IN_PROGRESS for row in before.values())
    events_before = len(committed(url))

    # A restart changes nothing: nothing runs again, nothing is recovered.
    await server.stop(grace=1)
    started.remove(server)
    again = await start(started, url)
    await asyncio.sleep(0.2)
    assert again.engine.running == 0
    assert stored_tasks(url, root_id=root) == before
    assert len(committed(url)) == events_before


# ---------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> AsyncIterator[Path]:
    """A 16 MiB tmpfs (root only: mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk up (a filler file), leaving nothing free."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_is_waited_out_without_a_restart(
    small_disk: Path, started: list[TaskgroveServer]
) -> None:
    """While a tree runs the disk fills up: writes wait (health NOT_SERVING, new work
    refused with UNAVAILABLE), nothing is lost or abandoned, and once there is space
    again everything carries on by itself."""
    url = await prepared_database(small_disk / "full.db")
    server = await start(started, url, max_concurrency=8)
    address = f"127.0.0.1:{server.port}"
    async with AsyncClient(address) as client:
        running = await client.create_task_tree(sleep_tree(400, seconds=0.02), execute=True)
        filler = fill(small_disk)
        # A large tree cannot be stored now: its creation waits for space (or, if the
        # server already knows storage fails, is refused at once with nothing written).
        waiting = asyncio.create_task(
            client.create_task_tree(sleep_tree(2000), execute=True, basic=True)
        )
        await until(lambda: not server.store.writer.available, 30)
        assert not await serving(address)
        with pytest.raises(TaskgroveError) as refused:
            await client.create_task(name="sleep_executor", user_id="u")
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert refused.value.reason == reasons.STORAGE_UNAVAILABLE

        filler.unlink()  # space again: the server carries on by itself
        await until(lambda: server.store.writer.available, 30)
        roots = [running["root"].id]
        try:
            roots.append((await asyncio.wait_for(waiting, 30))["root"].id)
        except TaskgroveError as error:
            assert error.reason == reasons.STORAGE_UNAVAILABLE
            assert len(stored_tasks(url)) == 401  # the running tree only
        assert await serving(address)
        for root in roots:
            await wait_finished(client, root, limit_s=90)
            assert (await client.get_task(root)).status == statuses.COMPLETED
            stored = assert_stored_equals_published(url, root)
            assert all(row["error"] is None for row in stored.values())
    assert server.engine.running == 0


# ---------------------------------------------------------------------- one server per file


async def test_a_second_server_on_the_same_sqlite_file_is_refused(
    tmp_path: Path, started: list[TaskgroveServer]
) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    first = await start(started, url)
    second = TaskgroveServer(ServerConfig(address="127.0.0.1:0", db_url=url))
    with pytest.raises(DatabaseInUse) as refused:
        await second.start()
    assert str(os.getpid()) in str(refused.value)
    await second.stop(grace=0)

    # The command line says so in one line and exits 2.
    process = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0", "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TASKGROVE_LOG_LEVEL": "WARNING"},
    )
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "another taskgrove server" in lines[0], process.stderr

    # The first server is unaffected; once it stops, the file is free again.
    async with AsyncClient(f"127.0.0.1:{first.port}") as client:
        await client.create_task(name="still-fine")
    await first.stop(grace=1)
    started.remove(first)
    again = await start(started, url)
    async with AsyncClient(f"127.0.0.1:{again.port}") as client:
        assert [t.name async for t in client.list_tasks()] == ["still-fine"]
