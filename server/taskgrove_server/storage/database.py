"""Opening the database: SQLite (WAL) by default, PostgreSQL by URL; one server per file."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another's lock before SQLITE_BUSY."""


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser()


def open_database(url: str) -> AsyncEngine:
    """An async SQLAlchemy engine for `url`; creates the SQLite file's directory."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_backend_name() == "sqlite":
        db = create_async_engine(url, pool_size=5, max_overflow=5)
        event.listen(db.sync_engine, "connect", sqlite_pragmas)
        return db
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def sync_sqlite_engine(url: str, *, pool_size: int) -> Engine | None:
    """A synchronous engine on the SQLite file of `url` (for work run on threads of our
    own), or None when `url` is not an SQLite file."""
    if sqlite_path(url) is None:
        return None
    parsed = make_url(url).set(drivername="sqlite")
    db = create_engine(parsed, pool_size=pool_size, max_overflow=0)
    event.listen(db, "connect", sqlite_pragmas)
    return db


class DatabaseInUse(Exception):
    """Another server holds this SQLite file."""


class FileLock:
    """An exclusive lock on `<database>.lock`, held while the server runs: the engine
    keeps the state of executing trees in memory, so two servers on one SQLite file would
    run tasks twice. The kernel drops the lock when the process dies, however it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DatabaseInUse(
                f"another taskgrove server (pid {holder}) is using {self.path.with_suffix('')}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
