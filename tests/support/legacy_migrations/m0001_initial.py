"""Tasks table with its indexes."""

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

VERSION = 1
NAME = "initial"


def upgrade(connection: Connection) -> None:
    metadata = MetaData()
    Table(
        "tasks",
        metadata,
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("id", String(36), nullable=False, unique=True),
        Column("parent_id", String(36)),
        Column("root_id", String(36), nullable=False),
        Column("user_id", String(255), nullable=False),
        Column("name", String(255), nullable=False),
        Column("executor", String(255)),
        Column("priority", Integer, nullable=False),
        Column("dependencies", JSON, nullable=False),
        Column("inputs", JSON, nullable=False),
        Column("params", JSON, nullable=False),
        Column("status", String(16), nullable=False),
        Column("execution_requested", Boolean, nullable=False),
        Column("result", JSON),
        Column("error", JSON),
        Column("progress", Float, nullable=False),
        Column("progress_message", Text, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("max_attempts", Integer, nullable=False),
        Column("retry_backoff_ms", Integer, nullable=False),
        Column("timeout_ms", Integer),
        Column("original_task_id", String(36)),
        Column("has_children", Boolean, nullable=False),
        Column("created_us", BigInteger, nullable=False),
        Column("started_us", BigInteger),
        Column("updated_us", BigInteger, nullable=False),
        Column("ended_us", BigInteger),
        Column("version", Integer, nullable=False),
        Index("ix_tasks_parent", "parent_id", "seq"),
        Index("ix_tasks_root", "root_id", "seq"),
        Index("ix_tasks_user", "user_id", "seq"),
        Index("ix_tasks_active", "execution_requested", "status"),
    )
    metadata.create_all(connection)
