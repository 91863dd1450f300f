"""Reverse dependency index (`task_dependencies`) and idempotency keys."""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    select,
)

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    connection = op.get_bind()
    metadata = MetaData()
    edges = Table(
        "task_dependencies",
        metadata,
        Column("task_id", String(36), primary_key=True),
        Column("depends_on", String(36), primary_key=True),
        Column("required", Boolean, nullable=False),
        Index("ix_task_dependencies_depends_on", "depends_on"),
    )
    Table(
        "idempotency_keys",
        metadata,
        Column("request_id", String(255), primary_key=True),
        Column("method", String(64), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_us", BigInteger, nullable=False),
        Index("ix_idempotency_keys_created", "created_us"),
    )
    metadata.create_all(connection)
    # Index the dependencies of tasks stored before this migration.
    tasks = Table("tasks", MetaData(), Column("id", String(36)), Column("dependencies", JSON))
    rows = [
        {"task_id": task_id, "depends_on": dep["id"], "required": bool(dep.get("required", True))}
        for task_id, deps in connection.execute(select(tasks.c.id, tasks.c.dependencies))
        for dep in deps or ()
    ]
    if rows:
        connection.execute(edges.insert(), rows)
