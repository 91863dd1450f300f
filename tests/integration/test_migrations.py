"""Migrations (Alembic) build exactly the schema the code uses, once; databases made by the
0.1 runner are adopted with their data; a newer schema is refused."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ServerFactory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from support.legacy_migrations import create_legacy, legacy_latest_version
from support.trees import ROOT, ids, sleeper
from support.waiting import wait_finished
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.migrations import SchemaTooNew, latest_version, migrate
from taskgrove_server.storage.schema import metadata

HEAD = f"{latest_version():04d}"
TASKGROVE = [sys.executable, "-c", "import sys; from taskgrove._cli import main; sys.exit(main())"]


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def shape(conn: object) -> dict[str, tuple[set[str], set[str]]]:
    inspector = inspect(conn)
    return {
        name: (
            {c["name"] for c in inspector.get_columns(name)},
            # PostgreSQL lists a unique constraint's index too (tasks.id's).
            {i["name"] for i in inspector.get_indexes(name) if not i.get("duplicates_constraint")},
        )
        for name in inspector.get_table_names()
    }


EXPECTED = {
    table.name: (
        {column.name for column in table.columns},
        {index.name for index in table.indexes},
    )
    for table in metadata.sorted_tables
}


async def revision(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(await conn.scalars(text("SELECT version_num FROM alembic_version")))


async def reaches_head(engine: AsyncEngine) -> None:
    applied = await migrate(engine)
    assert applied == list(range(1, latest_version() + 1))
    assert await migrate(engine) == []  # a second start applies nothing
    assert await revision(engine) == [HEAD]
    async with engine.connect() as conn:
        stored = await conn.run_sync(shape)
    assert stored == {**EXPECTED, "alembic_version": ({"version_num"}, set())}


async def test_migrating_an_empty_sqlite_database_builds_schema_py(tmp_path: Path) -> None:
    engine = open_database(sqlite_url(tmp_path / "m.db"))
    try:
        await reaches_head(engine)
    finally:
        await engine.dispose()


async def test_migrating_an_empty_postgresql_database_builds_schema_py(pg_db_url: str) -> None:
    engine = open_database(pg_db_url)
    try:
        await reaches_head(engine)
    finally:
        await engine.dispose()


def test_the_legacy_versions_are_the_first_revisions() -> None:
    # 0.1's runner stopped at version 6; revisions after it exist only in Alembic.
    assert legacy_latest_version() == 6 < latest_version()


@pytest.mark.parametrize("version", range(1, legacy_latest_version() + 1))
async def test_a_legacy_database_at_any_version_is_adopted(tmp_path: Path, version: int) -> None:
    engine = open_database(sqlite_url(tmp_path / "legacy.db"))
    try:
        assert await create_legacy(engine, version) == list(range(1, version + 1))
        assert await migrate(engine) == list(range(version + 1, latest_version() + 1))
        assert await revision(engine) == [HEAD]
        async with engine.connect() as conn:
            stored = await conn.run_sync(shape)
            legacy = list(await conn.scalars(text("SELECT version FROM schema_migrations")))
        assert legacy == list(range(1, version + 1))  # left as the old runner wrote it
        del stored["schema_migrations"], stored["alembic_version"]
        assert stored == EXPECTED
    finally:
        await engine.dispose()


async def test_a_legacy_0_1_database_with_rows_upgrades_and_serves(
    tmp_path: Path, make_server: ServerFactory
) -> None:
    # Rows as a server writes them: made by today's server, copied into a 0.1 database.
    source = await make_server()
    client = make_server.client(source)
    made = ids(
        await client.create_task_tree(
            [ROOT, sleeper("a"), sleeper("b", dependencies=["a"])], execute=True
        )
    )
    await wait_finished(client, made["root"])
    before = {local: await client.get_task(task_id) for local, task_id in made.items()}
    await make_server.stop(source)
    source_path = source.config.db_url.removeprefix("sqlite+aiosqlite:///")

    legacy_path = tmp_path / "legacy-0.1.db"
    engine = open_database(sqlite_url(legacy_path))
    try:
        assert await create_legacy(engine, 1) == [1]
    finally:
        await engine.dispose()
    with sqlite3.connect(legacy_path) as connection:
        columns = ", ".join(
            row[1] for row in connection.execute("PRAGMA table_info(tasks)").fetchall()
        )
        connection.execute("ATTACH DATABASE ? AS source", (source_path,))
        connection.execute(f"INSERT INTO tasks ({columns}) SELECT {columns} FROM source.tasks")
    assert set(legacy_tables(legacy_path)) == {"tasks", "schema_migrations"}

    upgraded = await make_server(db_url=sqlite_url(legacy_path))
    client = make_server.client(upgraded)
    for local, task_id in made.items():
        after = await client.get_task(task_id)
        assert (after.name, after.status, after.result) == (
            before[local].name,
            before[local].status,
            before[local].result,
        )
        assert after.dependencies == before[local].dependencies
    await make_server.stop(upgraded)
    with sqlite3.connect(legacy_path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        # m0003's backfill indexed the dependency stored before it.
        edges = connection.execute("SELECT task_id, depends_on FROM task_dependencies")
        assert edges.fetchall() == [(made["b"], made["a"])]


def legacy_tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [name for (name,) in rows]


async def test_a_legacy_version_newer_than_the_server_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    engine = open_database(sqlite_url(path))
    try:
        await create_legacy(engine, legacy_latest_version())
        newer = legacy_latest_version() + 1
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO schema_migrations VALUES ({newer}, 'future', 0)"))
        with pytest.raises(SchemaTooNew, match=f"version {newer}, newer than this server's"):
            await migrate(engine)
        assert "alembic_version" not in legacy_tables(path)  # nothing changed
    finally:
        await engine.dispose()


async def test_an_unknown_alembic_revision_is_refused(tmp_path: Path) -> None:
    engine = open_database(sqlite_url(tmp_path / "m.db"))
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(SchemaTooNew, match="version 99, newer than this server's"):
            await migrate(engine)
        assert await revision(engine) == ["0099"]
    finally:
        await engine.dispose()


def taskgrove(*args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKGROVE_DB"}
    if db is not None:
        env["TASKGROVE_DB"] = db
    return subprocess.run(
        [*TASKGROVE, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_db_upgrade_and_current_as_commands(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cli.db")
    missing = taskgrove("db", "current", "--db", url)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("error: no database at ")
    assert missing.stderr.count("\n") == 1

    engine = open_database(url)
    asyncio.run(create_legacy(engine, 1))
    asyncio.run(engine.dispose())
    legacy = taskgrove("db", "current", db=url)  # TASKGROVE_DB
    assert legacy.returncode == 0, legacy.stderr
    assert legacy.stdout == (
        f"0001 (head is {HEAD}: `taskgrove db upgrade`) "
        "(made by taskgrove 0.1; adopted on upgrade)\n"
    )

    upgraded = taskgrove("db", "upgrade", "--db", url)
    assert upgraded.returncode == 0, upgraded.stderr
    expected = ", ".join(f"{v:04d}" for v in range(2, latest_version() + 1))
    assert upgraded.stdout == f"applied migrations {expected}\n"
    again = taskgrove("db", "upgrade", "--db", url)
    assert again.stdout == "nothing to apply: the database is at the head revision\n"
    current = taskgrove("db", "current", "--db", url)
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head)\n")

    with sqlite3.connect(tmp_path / "cli.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    for command in ("upgrade", "current"):
        refused = taskgrove("db", command, "--db", url)
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: the database's schema is at version 99, ")
        assert refused.stderr.count("\n") == 1


def test_db_upgrade_of_a_url_it_cannot_use_is_one_line(tmp_path: Path) -> None:
    refused = taskgrove("db", "upgrade", "--db", str(tmp_path / "tg.db"))
    assert refused.returncode == 2
    assert "give --db sqlite+aiosqlite:///" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_db_upgrade_on_postgresql(pg_db_url: str) -> None:
    upgraded = taskgrove("db", "upgrade", "--db", pg_db_url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = taskgrove("db", "current", db=pg_db_url)
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head)\n")
