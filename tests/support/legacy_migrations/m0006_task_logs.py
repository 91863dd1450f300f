"""Lines that executors log, per attempt (capped by the server: see logs/attempt_log.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, Text

VERSION = 6
NAME = "task_logs"


def upgrade(connection: Connection) -> None:
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
