"""Which storage errors are the storage's (full, locked, unreachable: retry later) and
which are the data's (refused for good)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

# Errors of the storage, not of the data: the same batch may commit later.
_TRANSIENT_MESSAGES = (
    "disk is full",
    "disk i/o error",
    "database is locked",
    "unable to open database",
    "readonly database",
    "no space left",
    "connection",
    "starting up",
    "shutting down",
    "timeout",
    "timed out",
)


def is_locked(error: BaseException) -> bool:
    """Whether `error` is SQLite's SQLITE_BUSY: another connection holds the lock."""
    return isinstance(error, sa_exc.OperationalError) and "database is locked" in str(error)


def is_disconnect(error: BaseException) -> bool:
    """The connection is gone (SQLAlchemy invalidated it): what ran on it did not commit."""
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def is_interrupted(error: BaseException) -> bool:
    """Whether `error` is SQLite's SQLITE_INTERRUPT (a statement we cut short on purpose),
    as SQLAlchemy wraps it or straight from the driver."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    return isinstance(orig, sqlite3.Error) and orig.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT


def is_transient(error: BaseException) -> bool:
    """Whether `error` is the storage's (full, locked, unreachable), not the data's."""
    if isinstance(error, sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | OSError):
        text = str(error).lower()
        return any(marker in text for marker in _TRANSIENT_MESSAGES)
    return False


def driver_error(sql: str, error: sqlite3.Error) -> sa_exc.StatementError:
    """sqlite3's `error` of a raw cursor call (bulk.py, queries.py) as SQLAlchemy wraps
    it on its own calls, so a locked or full database is classified alike. (Raised from
    a plain `except`: a generator context manager around every statement cost 2 us.)"""
    return sa_exc.DBAPIError.instance(sql, None, error, sqlite3.Error)
