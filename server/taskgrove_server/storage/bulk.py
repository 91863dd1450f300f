"""Bulk writes as plain DBAPI executemany.

The writer's hot statements run thousands of rows per batch. SQLAlchemy's per-row
parameter processing costs more than SQLite's own insert, so these statements are
compiled once per dialect and their rows handed to the driver as tuples (JSON columns
serialised here, as the JSON type would).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.sql.dml import UpdateBase

# NaN and infinity are not JSON (PostgreSQL refuses them): refuse them here too. One
# encoder for every value (json.dumps with options builds a new one per call).
_dumps = json.JSONEncoder(allow_nan=False).encode


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
        sql, order, defaults = self._compile(conn, keys)
        json_at = [index for index, key in enumerate(order) if key in self._json_keys]
        params: Iterable[Sequence[Any]] = values
        if list(keys) != order:
            # Put each tuple in the statement's order (C-level itemgetter), with the
            # statement's own constants (e.g. `version + 1`) appended to pick from.
            position = {key: index for index, key in enumerate(keys)}
            constants = tuple(defaults[key] for key in order if key not in position)
            extra = iter(range(len(keys), len(keys) + len(constants)))
            getter = operator.itemgetter(
                *(position[key] if key in position else next(extra) for key in order)
            )
            params = (
                (getter(row + constants) for row in values)
                if constants
                else (getter(row) for row in values)
            )
        if json_at:
            params = (_encoded(row, json_at) for row in params)
        return _run(conn, sql, params)


def _encoded(row: Sequence[Any], json_at: list[int]) -> Sequence[Any]:
    """The row with its JSON columns serialised (copied only when one is not NULL)."""
    out: list[Any] | None = None
    for index in json_at:
        value = row[index]
        if value is not None:
            if out is None:
                out = list(row)
            out[index] = _dumps(value)
    return row if out is None else out


def _run(conn: Connection, sql: str, params: Iterable[Sequence[Any]]) -> int:
    if conn.dialect.driver == "pysqlite":
        # sqlite3 takes the parameters lazily: no second copy of a large batch.
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()
    listed = [tuple(row) for row in params]  # drivers want tuples, not lists
    if not listed:
        return 0
    result = conn.exec_driver_sql(sql, listed)
    return int(result.rowcount)


def json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.key for c in table.columns if isinstance(c.type, JSON))
