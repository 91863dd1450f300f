"""The event log (`task_events`) and its per-tree compaction watermarks."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

VERSION = 2
NAME = "events"


def upgrade(connection: Connection) -> None:
    metadata = MetaData()
    Table(
        "task_events",
        metadata,
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("task_id", String(36), nullable=False),
        Column("root_id", String(36), nullable=False),
        Column("user_id", String(255), nullable=False),
        Column("parent_id", String(36)),
        Column("name", String(255), nullable=False),
        Column("type", String(16), nullable=False),
        Column("status", String(16), nullable=False),
        Column("previous_status", String(16)),
        Column("progress", Float, nullable=False),
        Column("progress_message", Text, nullable=False),
        Column("error", JSON),
        Column("attempt", Integer, nullable=False),
        Column("is_group", Boolean, nullable=False),
        Column("time_us", BigInteger, nullable=False),
        Index("ix_task_events_root", "root_id", "sequence"),
        Index("ix_task_events_task", "task_id", "sequence"),
        Index("ix_task_events_user", "user_id", "sequence"),
    )
    Table(
        "event_compaction",
        metadata,
        Column("root_id", String(36), primary_key=True),
        Column("user_id", String(255), nullable=False),
        Column("compacted_through", BigInteger, nullable=False),
        Index("ix_event_compaction_user", "user_id"),
    )
    metadata.create_all(connection)
