"""Lines that executors log, per attempt (capped by the server: see logs/attempt_log.py)."""

from __future__ import annotations

from alembic import op
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    connection = op.get_bind()
    metadata = MetaData()
    Table(
        "task_logs",
        metadata,
        Column("task_id", String(36), primary_key=True),
        Column("attempt", Integer, primary_key=True),
        Column("sequence", BigInteger, primary_key=True),
        Column("time_us", BigInteger, nullable=False),
        Column("text", Text, nullable=False),
    )
    metadata.create_all(connection)
