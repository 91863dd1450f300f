"""Bulk writes as plain DBAPI executemany.

The writer's hot statements run thousands of rows per batch. SQLAlchemy's per-row
parameter processing costs more than SQLite's own insert, so these statements are
compiled once per dialect and their rows handed to the driver as tuples (JSON columns
serialised here, as the JSON type would).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.sql.dml import UpdateBase

# NaN and infinity are not JSON (PostgreSQL refuses them): refuse them here too.
_dumps = functools.partial(json.dumps, allow_nan=False)


class BulkStatement:
    def __init__(self, statement: UpdateBase, json_keys: Collection[str] = ()) -> None:
        self._statement = statement
        self._json_keys = frozenset(json_keys)
        self._compiled: dict[
            tuple[str, tuple[str, ...]], tuple[str, list[str], dict[str, Any]]
        ] = {}

    def _compile(
        self, conn: Connection, keys: tuple[str, ...]
    ) -> tuple[str, list[str], dict[str, Any]]:
        cache_key = (conn.dialect.name, keys)
        found = self._compiled.get(cache_key)
        if found is None:
            compiled = self._statement.compile(dialect=conn.dialect, column_keys=list(keys))
            order = list(compiled.positiontup or ())
            found = (compiled.string, order, dict(compiled.params))
            self._compiled[cache_key] = found
        return found

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per row (dicts); returns the driver's rowcount (-1:
        unknown)."""
        if not rows:
            return 0
        keys = tuple(rows[0])
        sql, order, defaults = self._compile(conn, keys)
        dumps = _dumps
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
        return _run(conn, sql, params)

    def executemany_tuples(
        self, conn: Connection, keys: tuple[str, ...], values: Iterable[tuple[Any, ...]]
    ) -> int:
        """Run the statement once per tuple of `values`, each in the order of `keys`."""
        sql, order, _ = self._compile(conn, keys)
        position = {key: index for index, key in enumerate(keys)}
        picks = [position[key] for key in order]
        encode = [key in self._json_keys for key in order]
        dumps = _dumps
        params = (
            tuple(
                (dumps(row[pick]) if row[pick] is not None else None) if as_json else row[pick]
                for pick, as_json in zip(picks, encode, strict=True)
            )
            for row in values
        )
        return _run(conn, sql, params)


def _run(conn: Connection, sql: str, params: Iterable[tuple[Any, ...]]) -> int:
    if conn.dialect.driver == "pysqlite":
        # sqlite3 takes the parameters lazily: no second copy of a large batch.
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()
    listed = list(params)
    if not listed:
        return 0
    result = conn.exec_driver_sql(sql, listed)
    return int(result.rowcount)


def json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.key for c in table.columns if isinstance(c.type, JSON))
