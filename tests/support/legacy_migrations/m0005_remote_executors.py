"""Executors served by workers: remembered so that their tasks can be created, and wait,
while no worker serving them is connected (after a restart too)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Connection, MetaData, String, Table, Text

VERSION = 5
NAME = "remote_executors"


def upgrade(connection: Connection) -> None:
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
