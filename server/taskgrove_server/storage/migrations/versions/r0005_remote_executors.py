"""Executors served by workers: remembered so that their tasks can be created, and wait,
while no worker serving them is connected (after a restart too)."""

from __future__ import annotations

from alembic import op
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, Text

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    connection = op.get_bind()
    metadata = MetaData()
    Table(
        "remote_executors",
        metadata,
        Column("id", String(100), primary_key=True),
        Column("description", Text, nullable=False),
        Column("input_schema", JSON, nullable=False),
        Column("update_us", BigInteger, nullable=False),
    )
    metadata.create_all(connection)
