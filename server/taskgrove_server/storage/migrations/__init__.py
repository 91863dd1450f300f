"""Versioned schema migrations, applied in order at server start.

Each migration module has `VERSION`, `NAME` and `upgrade(connection)`; it spells out its own
DDL so that later changes to `schema.py` never rewrite history.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from types import ModuleType

from sqlalchemy import Connection, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.storage.schema import schema_migrations


def _migrations() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("m")
    ]
    return sorted(modules, key=lambda module: int(module.VERSION))


def latest_version() -> int:
    return max(int(m.VERSION) for m in _migrations())


class SchemaTooNew(Exception):
    """The database was migrated by a newer server: this one refuses to touch it."""


def _apply(connection: Connection) -> list[int]:
    if not inspect(connection).has_table("schema_migrations"):
        schema_migrations.create(connection)
    done = set(connection.execute(select(schema_migrations.c.version)).scalars())
    migrations = _migrations()
    known = {int(module.VERSION) for module in migrations}
    if unknown := sorted(done - known):
        raise SchemaTooNew(
            f"the database's schema is at version {max(done)}, newer than this server's "
            f"{max(known)} (unknown migrations {', '.join(map(str, unknown))}): a newer taskgrove "
            "created it; upgrade taskgrove or give another --db"
        )
    applied = []
    for module in migrations:
        version = int(module.VERSION)
        if version in done:
            continue
        module.upgrade(connection)
        connection.execute(
            schema_migrations.insert().values(
                version=version, name=module.NAME, applied_us=time.time_ns() // 1000
            )
        )
        applied.append(version)
    return applied


async def migrate(db: AsyncEngine) -> list[int]:
    """Apply every missing migration in one transaction; returns the versions applied.
    Raises SchemaTooNew, changing nothing, when the database has a migration this server
    does not know."""
    async with db.begin() as connection:
        return await connection.run_sync(_apply)
