"""The hand-written migration runner that taskgrove used before Alembic, kept for tests.

Its modules (m0001..m0006, each `VERSION`, `NAME`, `upgrade(connection)`) and its
`schema_migrations` table are exactly what 0.1 servers ran and wrote: `create_legacy` builds
a database as such a server left it, at any version, so that adopting it can be tested.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from types import ModuleType

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("applied_us", BigInteger, nullable=False),
)


def legacy_migrations() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("m")
    ]
    return sorted(modules, key=lambda module: int(module.VERSION))


def legacy_latest_version() -> int:
    return max(int(m.VERSION) for m in legacy_migrations())


def apply_legacy(connection: Connection, up_to: int) -> list[int]:
    """What the old runner did at start, with only the migrations up to `up_to` known."""
    if not inspect(connection).has_table("schema_migrations"):
        schema_migrations.create(connection)
    applied = []
    for module in legacy_migrations():
        version = int(module.VERSION)
        if version > up_to:
            break
        module.upgrade(connection)
        connection.execute(
            schema_migrations.insert().values(
                version=version, name=module.NAME, applied_us=time.time_ns() // 1000
            )
        )
        applied.append(version)
    return applied


async def create_legacy(db: AsyncEngine, up_to: int) -> list[int]:
    """Migrate an empty database as the old runner would, to version `up_to`."""
    async with db.begin() as connection:
        return await connection.run_sync(apply_legacy, up_to)
