"""Replicas: trees go to the workers of their executors. A lease may be handed to another
replica, which adopts (loads) the tree; each replica says which remote executors its
connected workers serve."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "tree_leases",
        Column("adopt", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    metadata = MetaData()
    Table(
        "executor_presence",
        metadata,
        Column("replica_id", String(64), primary_key=True),
        Column("executor_id", String(100), primary_key=True),
        Column("workers", Integer, nullable=False),
        Column("expires_us", BigInteger, nullable=False),
        Index("ix_executor_presence_executor", "executor_id"),
    )
    metadata.create_all(op.get_bind())
