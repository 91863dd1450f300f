"""Reads as plain DBAPI calls on SQLite (the reads' counterpart of bulk.py).

A point read through SQLAlchemy's execution and result layers costs several times what
SQLite takes to answer it, and the hot reads (a task, its lineage, a tree chunk) run on
every request. So each query is compiled once per dialect and, on SQLite, run on the raw
cursor with its values converted here as the column types would (JSON text decoded,
integers to booleans). Other dialects run the statement as usual.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Connection
from sqlalchemy.sql import Select

from taskgrove_server.storage.failures import driver_error

_EXPANDING = re.compile(r"__\[POSTCOMPILE_(\w+)\]")
_loads = json.loads


class Query:
    """A SELECT with named bound parameters; an expanding one takes a sequence."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(statement.selected_columns):
            if isinstance(column.type, JSON):
                self._converters.append((index, _json))
            elif isinstance(column.type, Boolean):
                self._converters.append((index, bool))
        self._plan: _Plan | None = None

    def rows(self, conn: Connection, params: dict[str, Any] | None = None) -> list[Sequence[Any]]:
        """Every row, as plain values."""
        params = params or {}
        if conn.dialect.driver != "pysqlite":
            return list(conn.execute(self.statement, params))
        if self._plan is None:
            self._plan = _Plan.of(self.statement, conn)
        sql, values = self._plan.call(params)
        raw: Any = conn.connection.dbapi_connection
        try:
            fetched: list[Sequence[Any]] = raw.execute(sql, values).fetchall()
        except sqlite3.Error as error:
            raise driver_error(sql, error) from error
        if not self._converters:
            return fetched
        converted: list[Sequence[Any]] = []
        for row in fetched:
            out = list(row)
            for index, convert in self._converters:
                if out[index] is not None:
                    out[index] = convert(out[index])
            converted.append(out)
        return converted


class _Plan:
    """The statement compiled for SQLite: its text cut at each expanding parameter, the
    parameter names in order, and the statement's own constants."""

    def __init__(
        self, texts: list[str], names: list[str], expanding: set[str], constants: dict[str, Any]
    ) -> None:
        self.texts = texts
        self.names = names
        self.expanding = expanding
        self.constants = constants

    @classmethod
    def of(cls, statement: Select[Any], conn: Connection) -> _Plan:
        compiled = statement.compile(dialect=conn.dialect)
        texts = _EXPANDING.split(compiled.string)[0::2]  # split() interleaves the names
        expanding = {name for name, bind in compiled.binds.items() if bind.expanding}
        return cls(texts, list(compiled.positiontup or ()), expanding, dict(compiled.params))

    def call(self, params: dict[str, Any]) -> tuple[str, list[Any]]:
        values: list[Any] = []
        pieces = [self.texts[0]]
        for name in self.names:
            value = params[name] if name in params else self.constants[name]
            if name in self.expanding:  # a sequence (a literal IN list is one too)
                values.extend(value)
                pieces += [", ".join("?" * len(value)), self.texts[len(pieces) // 2 + 1]]
            else:
                values.append(value)
        return "".join(pieces), values


def _json(value: Any) -> Any:
    return _loads(value) if isinstance(value, str) else value
