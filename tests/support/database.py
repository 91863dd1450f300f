"""What a test server's SQLite database holds, read directly (outside the server)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, func, select
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.storage.schema import task_events, tasks


def sync_url(db_url: str) -> str:
    return db_url.replace("sqlite+aiosqlite://", "sqlite://", 1)


def db_of(server: TaskgroveServer) -> str:
    return server.config.db_url


def committed(db_url: str, **where: str) -> list[dict[str, Any]]:
    """Committed events (rows of task_events) matching `where`, in sequence order."""
    engine = create_engine(sync_url(db_url))
    try:
        query = select(task_events).order_by(task_events.c.sequence)
        for column, value in where.items():
            query = query.where(task_events.c[column] == value)
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def committed_count(db_url: str, **where: str) -> int:
    """How many committed events (rows of task_events) match `where`."""
    engine = create_engine(sync_url(db_url))
    try:
        query = select(func.count()).select_from(task_events)
        for column, value in where.items():
            query = query.where(task_events.c[column] == value)
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def committed_sequences(db_url: str, **where: str) -> list[int]:
    return [row["sequence"] for row in committed(db_url, **where)]


def stored_tasks(
    db_url: str, root_id: str | None = None, **where: str
) -> dict[str, dict[str, Any]]:
    """Task id -> stored row, of the tasks matching `where` (and `root_id` if given)."""
    if root_id is not None:
        where = {"root_id": root_id, **where}
    engine = create_engine(sync_url(db_url))
    try:
        query = select(tasks)
        for column, value in where.items():
            query = query.where(tasks.c[column] == value)
        with engine.connect() as conn:
            return {row["id"]: dict(row) for row in conn.execute(query).mappings()}
    finally:
        engine.dispose()
