"""Durations as BIGINT milliseconds (a 25-day timeout overflows a 32-bit integer), and
event types named as the proto's TaskEventType (`status` -> `status_changed`)."""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    connection = op.get_bind()
    # SQLite's INTEGER is already 64 bits wide.
    if connection.dialect.name == "postgresql":
        connection.execute(
            text(
                "ALTER TABLE tasks ALTER COLUMN retry_backoff_ms TYPE BIGINT, "
                "ALTER COLUMN timeout_ms TYPE BIGINT"
            )
        )
    connection.execute(text("UPDATE task_events SET type = 'status_changed' WHERE type = 'status'"))
