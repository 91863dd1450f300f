"""Bulk writes as plain DBAPI executemany.

The writer's hot statements run thousands of rows per batch. SQLAlchemy's per-row
parameter processing costs more than SQLite's own insert, so these statements are
compiled once per dialect and their rows handed to the driver as tuples (JSON columns
serialised here, as the JSON type would).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.sql.dml import UpdateBase


class BulkStatement:
    def __init__(self, statement: UpdateBase, json_keys: Collection[str] = ()) -> None:
        self._statement = statement
        self._json_keys = frozenset(json_keys)
        self._compiled: dict[
            tuple[str, tuple[str, ...]], tuple[str, list[str], dict[str, Any]]
        ] = {}

    def _compile(
        self, dialect_name: str, conn: Connection, keys: tuple[str, ...]
    ) -> tuple[str, list[str], dict[str, Any]]:
        cache_key = (dialect_name, keys)
        found = self._compiled.get(cache_key)
        if found is None:
            compiled = self._statement.compile(dialect=conn.dialect, column_keys=list(keys))
            order = list(compiled.positiontup or ())
            found = (compiled.string, order, dict(compiled.params))
            self._compiled[cache_key] = found
        return found

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per row; returns the driver's rowcount (-1: unknown)."""
        if not rows:
            return 0
        keys = tuple(rows[0])
        sql, order, defaults = self._compile(conn.dialect.name, conn, keys)
        dumps = json.dumps
        json_keys = self._json_keys
        params = (
            tuple(
                (dumps(row[key]) if row[key] is not None else None)
                if key in json_keys
                else row[key]
                if key in row
                else defaults[key]
                for key in order
            )
            for row in rows
        )
        if conn.dialect.driver == "pysqlite":
            # sqlite3 takes the parameters lazily: no second copy of a large batch.
            raw: Any = conn.connection.dbapi_connection
            cursor = raw.cursor()
            try:
                cursor.executemany(sql, params)
                return int(cursor.rowcount)
            finally:
                cursor.close()
        result = conn.exec_driver_sql(sql, list(params))
        return int(result.rowcount)


def json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.key for c in table.columns if isinstance(c.type, JSON))
