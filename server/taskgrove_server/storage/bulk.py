"""Bulk writes as plain DBAPI executemany.

The writer's hot statements run thousands of rows per batch. SQLAlchemy's per-row
parameter processing costs more than SQLite's own insert, so these statements are
compiled once per dialect and their rows handed to the driver as tuples (JSON columns
serialised here, as the JSON type would).
"""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.sql.dml import UpdateBase

from taskgrove_server.storage.failures import driver_error

# NaN and infinity are not JSON (PostgreSQL refuses them): refuse them here too. One
# encoder for every value (json.dumps with options builds a new one per call).
dumps = json.JSONEncoder(allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class _Plan:
    """How tuples in one key order become the compiled statement's parameters."""

    sql: str
    reorder: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None
    """None: the tuples are in the statement's order already."""
    json_at: list[int]
    """Positions (in the statement's order) of JSON columns."""


class BulkStatement:
    def __init__(self, statement: UpdateBase, json_keys: Collection[str] = ()) -> None:
        self._statement = statement
        self._json_keys = frozenset(json_keys)
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> _Plan:
        """Compiled once per dialect and key order: a batch of one row (a chain's step)
        pays for none of this."""
        cache_key = (conn.dialect.name, keys)
        plan = self._plans.get(cache_key)
        if plan is None:
            compiled = self._statement.compile(dialect=conn.dialect, column_keys=list(keys))
            order = list(compiled.positiontup or ())
            json_at = [index for index, key in enumerate(order) if key in self._json_keys]
            reorder = None
            if list(keys) != order:
                # Pick each parameter from the tuple (C-level itemgetter), with the
                # statement's own constants (e.g. `version + 1`) appended to pick from.
                position = {key: index for index, key in enumerate(keys)}
                constants = tuple(compiled.params[k] for k in order if k not in position)
                extra = iter(range(len(keys), len(keys) + len(constants)))
                getter = operator.itemgetter(
                    *(position[key] if key in position else next(extra) for key in order)
                )
                reorder = (lambda row: getter(row + constants)) if constants else getter
            plan = _Plan(compiled.string, reorder, json_at)
            self._plans[cache_key] = plan
        return plan

    def executemany(
        self, conn: Connection, keys: tuple[str, ...], values: Iterable[tuple[Any, ...]]
    ) -> int:
        """Run the statement once per tuple of `values`, each in the order of `keys`;
        returns the driver's rowcount (-1: unknown)."""
        plan = self._plan(conn, keys)
        params: Iterable[Sequence[Any]] = values
        if plan.reorder is not None:
            params = map(plan.reorder, params)  # type: ignore[arg-type]
        if plan.json_at:
            json_at = plan.json_at
            params = (_encoded(row, json_at) for row in params)
        return _run(conn, plan.sql, params)


def _encoded(row: Sequence[Any], json_at: list[int]) -> Sequence[Any]:
    """The row with its JSON columns serialised (copied only when one is not NULL)."""
    out: list[Any] | None = None
    for index in json_at:
        value = row[index]
        if value is not None:
            if out is None:
                out = list(row)
            out[index] = dumps(value)
    return row if out is None else out


def _run(conn: Connection, sql: str, params: Iterable[Sequence[Any]]) -> int:
    if conn.dialect.driver == "pysqlite":
        # sqlite3 takes the parameters lazily: no second copy of a large batch.
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            try:
                cursor.executemany(sql, params)
            except sqlite3.Error as error:
                raise driver_error(sql, error) from error
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
