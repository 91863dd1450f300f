"""Opening the database: SQLite (WAL) by default, PostgreSQL by URL; one server per file."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskgrove_server.config import ConfigError

BUSY_TIMEOUT_MS = 10_000
"""How long a connection waits for another's lock before SQLITE_BUSY."""


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


class DatabaseUnavailable(Exception):
    """The database cannot be opened at start (unreachable, refused, unwritable)."""


_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_HOW = "(--db or TASKGROVE_DB)"


def check_db_url(url: str) -> None:
    """Raise ConfigError, saying what to give instead, unless `url` is a database URL the
    server can open: SQLite through aiosqlite or PostgreSQL through asyncpg."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        if "://" not in url:
            path = Path(url).expanduser().absolute()
            raise ConfigError(
                f"database {url!r} is a path, not a URL; give --db sqlite+aiosqlite:///{path} "
                f"{_HOW}"
            ) from None
        raise ConfigError(
            f"database URL {url!r} cannot be parsed; give sqlite+aiosqlite:////path/to/file.db "
            f"or postgresql+asyncpg://user:password@host/db {_HOW}"
        ) from None
    backend, driver = parsed.get_backend_name(), f"{parsed.drivername}"
    wanted = _DRIVERS.get(backend)
    shown = parsed.render_as_string(hide_password=True)
    if wanted is None:
        raise ConfigError(
            f"database URL {shown!r}: {backend} is not supported; give "
            f"sqlite+aiosqlite:///PATH or postgresql+asyncpg://... {_HOW}"
        )
    if driver != wanted:
        raise ConfigError(
            f"database URL {shown!r} needs the async driver: begin it with {wanted}:// {_HOW}"
        )
    if backend == "postgresql" and importlib.util.find_spec("asyncpg") is None:
        raise ConfigError("PostgreSQL needs the asyncpg driver: pip install 'taskgrove[postgres]'")


def shown_url(url: str) -> str:
    """`url` with its password hidden (for logs and messages)."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser()


def make_directory(url: str) -> None:
    """Create the directory of an SQLite file (nothing for other databases); raises
    DatabaseUnavailable when it cannot."""
    path = sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailable(
            f"cannot create the directory of the database {path}: {error.strerror}; "
            f"give a path you can write {_HOW}"
        ) from None


def open_database(url: str, *, create_directory: bool = True) -> AsyncEngine:
    """An async SQLAlchemy engine for `url` (nothing is opened yet); creates the SQLite
    file's directory unless told not to (the server does that when it starts)."""
    if create_directory:
        make_directory(url)
    if make_url(url).get_backend_name() == "sqlite":
        db = create_async_engine(url, pool_size=5, max_overflow=5)
        event.listen(db.sync_engine, "connect", sqlite_pragmas)
        return db
    # No JIT: it compiled a recursive walk over a large tasks table for every read, 8 ms
    # of a read that runs in under 1 ms; the server's queries are all short.
    connect_args = (
        {"server_settings": {"jit": "off"}} if make_url(url).get_driver_name() == "asyncpg" else {}
    )
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=connect_args
    )


def sync_sqlite_engine(url: str, *, pool_size: int, max_overflow: int = 0) -> Engine | None:
    """A synchronous engine on the SQLite file of `url` (for work run on threads of our
    own), or None when `url` is not an SQLite file."""
    if sqlite_path(url) is None:
        return None
    parsed = make_url(url).set(drivername="sqlite")
    db = create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
    event.listen(db, "connect", sqlite_pragmas)
    return db


class DatabaseInUse(Exception):
    """Another server holds this SQLite file."""


async def check_connection(db: AsyncEngine, url: str) -> None:
    """Open one connection, or raise DatabaseUnavailable saying why and what to check."""
    try:
        async with db.connect():
            pass
    except (OSError, SQLAlchemyError) as error:
        cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
        why = " ".join(str(cause).split()) or type(cause).__name__
        hint = (
            "is the directory writable?"
            if sqlite_path(url) is not None
            else "is PostgreSQL running there, and are the user, password and database right?"
        )
        raise DatabaseUnavailable(
            f"cannot open the database {shown_url(url)}: {why}; {hint} (--db or TASKGROVE_DB)"
        ) from None


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
