"""Schema migrations with Alembic, applied in one transaction at server start (or by
`taskgrove db upgrade`).

The environment (env.py) and one revision per schema change (versions/, revision ids
"0001", "0002", ...) ship inside the package and are configured here, without alembic.ini.
Each revision spells out its own DDL so that later changes to `schema.py` never rewrite
history. A database made by the hand-written runner of taskgrove 0.1 (a `schema_migrations`
table, versions 1..6, which are revisions 0001..0006) is adopted: stamped at the revision of
its version, then upgraded; its `schema_migrations` is left as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.storage.database import (
    DatabaseUnavailable,
    FileLock,
    check_connection,
    check_db_url,
    make_directory,
    open_database,
    sqlite_path,
)

# The 0.1 runner's table, read to adopt a database it made (only the column read).
_legacy = Table("schema_migrations", MetaData(), Column("version", Integer, primary_key=True))
_LEGACY_LAST = 6
"""0.1's runner knew versions 1..6; a higher one is from a runner this server never was."""


# Alembic's own INFO lines ("Context impl SQLiteImpl.") are noise at every start: the server
# logs the migrations it applied.
logging.getLogger("alembic").setLevel(logging.WARNING)


class SchemaTooNew(Exception):
    """The database was migrated by a newer server: this one refuses to touch it."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _number(revision: str) -> int | str:
    return int(revision) if revision.isdigit() else revision


def latest_version() -> int:
    """The head revision as a number (revision ids are zero-padded numbers)."""
    head = _script().get_current_head()
    assert head is not None
    return int(head)


def _too_new(versions: list[int | str], unknown: list[int | str]) -> SchemaTooNew:
    return SchemaTooNew(
        f"the database's schema is at version {max(map(str, versions), key=_order)}, newer "
        f"than this server's {latest_version()} (unknown migrations "
        f"{', '.join(map(str, unknown))}): a newer taskgrove created it; upgrade taskgrove or "
        "give another --db"
    )


def _order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _legacy_versions(connection: Connection) -> list[int] | None:
    if not inspect(connection).has_table("schema_migrations"):
        return None
    return sorted(connection.execute(select(_legacy.c.version)).scalars())


def _current(connection: Connection, script: ScriptDirectory) -> str | None:
    """The database's revision (None when empty), adopting nothing; SchemaTooNew when this
    server does not know it."""
    heads = MigrationContext.configure(connection).get_current_heads()
    known = {revision.revision for revision in script.walk_revisions()}
    if unknown := sorted(set(heads) - known, key=_order):
        raise _too_new([_number(h) for h in heads], [_number(u) for u in unknown])
    if heads:
        return heads[0]
    legacy = _legacy_versions(connection)
    if not legacy:
        return None
    if unknown_versions := [v for v in legacy if not 1 <= v <= _LEGACY_LAST]:
        raise _too_new(list(legacy), list(unknown_versions))
    return f"{max(legacy):04d}"


_MIGRATION_LOCK = 0x7461736B67726F76  # "taskgrov"
"""PostgreSQL advisory lock key: replicas starting together migrate one after another
(the others then find the schema at head)."""


def _apply(connection: Connection) -> list[int]:
    if connection.dialect.name == "postgresql":  # released when the transaction ends
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    script = _script()
    current = _current(connection, script)
    config = _config(connection)
    if current is not None and not MigrationContext.configure(connection).get_current_heads():
        command.stamp(config, current)  # adopt the 0.1 runner's database
    pending = [
        int(revision.revision) for revision in script.iterate_revisions("heads", current or "base")
    ]
    command.upgrade(config, "head")
    return sorted(pending)


async def migrate(db: AsyncEngine) -> list[int]:
    """Apply every missing revision in one transaction; returns the revisions applied (as
    numbers). Raises SchemaTooNew, changing nothing, when the database has a revision (or a
    0.1 `schema_migrations` version) this server does not know."""
    async with db.begin() as connection:
        return await connection.run_sync(_apply)


async def _describe(db: AsyncEngine) -> str:
    async with db.connect() as connection:
        current = await connection.run_sync(lambda sync: _current(sync, _script()))
        adopted = await connection.run_sync(
            lambda sync: bool(MigrationContext.configure(sync).get_current_heads())
        )
    head = f"{latest_version():04d}"
    if current is None:
        return f"empty (head {head}): `taskgrove db upgrade` or `taskgrove serve` creates it"
    where = "head" if current == head else f"head is {head}: `taskgrove db upgrade`"
    legacy = "" if adopted else " (made by taskgrove 0.1; adopted on upgrade)"
    return f"{current} ({where}){legacy}"


async def upgrade_database(url: str) -> list[int]:
    """`taskgrove db upgrade`: migrate the database at `url`; returns the revisions
    applied. Raises ConfigError, DatabaseUnavailable, DatabaseInUse (a server holds the
    SQLite file) or SchemaTooNew with one line saying why."""
    check_db_url(url)
    make_directory(url)
    path = sqlite_path(url)
    lock = FileLock(path) if path is not None else None
    if lock is not None:
        lock.acquire()
    db = open_database(url, create_directory=False)
    try:
        await check_connection(db, url)
        return await migrate(db)
    finally:
        await db.dispose()
        if lock is not None:
            lock.release()


async def current_database(url: str) -> str:
    """`taskgrove db current`: one line, the database's revision and whether it is the
    head, changing nothing."""
    check_db_url(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise DatabaseUnavailable(
            f"no database at {path}: give the --db of an existing one (or TASKGROVE_DB)"
        )
    db = open_database(url, create_directory=False)
    try:
        await check_connection(db, url)
        return await _describe(db)
    finally:
        await db.dispose()
