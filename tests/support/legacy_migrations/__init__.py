"""Databases as the hand-written migration runner of taskgrove 0.1 left them, for tests.

That runner applied versions 1..6, the same DDL as Alembic revisions 0001..0006 (they were
moved over unchanged), and recorded each in a `schema_migrations` table, with no
`alembic_version`. `create_legacy` builds such a database at any version: the revisions up
to it, then the old runner's bookkeeping instead of Alembic's.
"""

from __future__ import annotations

import time

from alembic import command
from alembic.config import Config
from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove_server.storage import migrations

LEGACY_VERSIONS = {
    1: "initial",
    2: "events",
    3: "dependency_index_and_idempotency",
    4: "wide_durations_and_event_types",
    5: "remote_executors",
    6: "task_logs",
}
"""The versions (and names) the 0.1 runner knew."""

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("applied_us", BigInteger, nullable=False),
)


def legacy_latest_version() -> int:
    return max(LEGACY_VERSIONS)


def apply_legacy(connection: Connection, up_to: int) -> list[int]:
    """The schema at version `up_to`, recorded as the old runner recorded it."""
    config = Config()
    config.set_main_option("script_location", migrations.__path__[0])
    config.attributes["connection"] = connection
    command.upgrade(config, f"{up_to:04d}")
    connection.execute(text("DROP TABLE alembic_version"))
    schema_migrations.create(connection)
    applied = [version for version in sorted(LEGACY_VERSIONS) if version <= up_to]
    connection.execute(
        schema_migrations.insert(),
        [
            {"version": v, "name": LEGACY_VERSIONS[v], "applied_us": time.time_ns() // 1000}
            for v in applied
        ],
    )
    return applied


async def create_legacy(db: AsyncEngine, up_to: int) -> list[int]:
    """Migrate an empty database as the old runner would, to version `up_to`."""
    async with db.begin() as connection:
        return await connection.run_sync(apply_legacy, up_to)
