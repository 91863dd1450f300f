"""Replicas sharing one PostgreSQL: tree leases with fencing tokens, the event counter
that numbers events in commit order, and the commands one replica sends the replica
that holds a tree. (SQLite databases get the same tables; one server uses them there.)"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    connection = op.get_bind()
    metadata = MetaData()
    Table(
        "tree_leases",
        metadata,
        Column("root_id", String(36), primary_key=True),
        Column("replica_id", String(64), nullable=False),
        Column("token", BigInteger, nullable=False),
        Column("expires_us", BigInteger, nullable=False),
        Index("ix_tree_leases_replica", "replica_id"),
        Index("ix_tree_leases_expires", "expires_us"),
    )
    head = Table(
        "event_head",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("sequence", BigInteger, nullable=False),
    )
    Table(
        "cluster_commands",
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("replica_id", String(64), nullable=False),
        Column("sender_id", String(64), nullable=False),
        Column("root_id", String(36), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("payload", JSON, nullable=False),
        Column("result", JSON, nullable=True),
        Column("created_us", BigInteger, nullable=False),
        Index("ix_cluster_commands_replica", "replica_id", "id"),
    )
    metadata.create_all(connection)
    if connection.dialect.name == "postgresql":
        # Fencing tokens come from one sequence for all trees: a token is never handed
        # out twice, so a lease row may be deleted (pruned) without a later claim of
        # its tree reusing a token a stale replica still holds.
        op.execute("CREATE SEQUENCE tree_lease_tokens")
    # The counter starts where the log is (pruned sequences included: never reused).
    events = Table("task_events", MetaData(), Column("sequence", BigInteger))
    pruned = Table("event_compaction", MetaData(), Column("compacted_through", BigInteger))
    newest = connection.scalar(select(func.max(events.c.sequence))) or 0
    compacted = connection.scalar(select(func.max(pruned.c.compacted_through))) or 0
    connection.execute(insert(head).values(id=1, sequence=max(newest, compacted)))
