"""Migrations build exactly the schema the code uses, once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, select
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.migrations import latest_version, migrate
from taskgrove_server.storage.schema import metadata, schema_migrations


async def test_migrating_an_empty_database_builds_schema_py(tmp_path: Path) -> None:
    engine = open_database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        applied = await migrate(engine)
        assert applied == list(range(1, latest_version() + 1))
        assert await migrate(engine) == []  # a second start applies nothing

        def shape(conn: object) -> dict[str, tuple[set[str], set[str]]]:
            inspector = inspect(conn)
            return {
                name: (
                    {c["name"] for c in inspector.get_columns(name)},
                    {i["name"] for i in inspector.get_indexes(name)},
                )
                for name in inspector.get_table_names()
            }

        async with engine.connect() as conn:
            stored = await conn.run_sync(shape)
            versions = list(await conn.scalars(select(schema_migrations.c.version)))
        assert versions == applied
        expected = {
            table.name: (
                {column.name for column in table.columns},
                {index.name for index in table.indexes},
            )
            for table in metadata.sorted_tables
        }
        assert stored == expected
    finally:
        await engine.dispose()
