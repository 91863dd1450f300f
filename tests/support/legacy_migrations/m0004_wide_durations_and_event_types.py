"""Durations as BIGINT milliseconds (a 25-day timeout overflows a 32-bit integer), and
event types named as the proto's TaskEventType (`status` -> `status_changed`)."""

from __future__ import annotations

from sqlalchemy import Connection, text

VERSION = 4
NAME = "wide_durations_and_event_types"


def upgrade(connection: Connection) -> None:
    # SQLite's INTEGER is already 64 bits wide.
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "ALTER TABLE tasks ALTER COLUMN retry_backoff_ms TYPE BIGINT, "
                "ALTER COLUMN timeout_ms TYPE BIGINT"
            )
        )
    connection.execute(text("UPDATE task_events SET type = 'status_changed' WHERE type = 'status'"))
