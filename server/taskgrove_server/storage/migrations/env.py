"""Alembic's environment: runs the revisions in versions/ on the connection that
`taskgrove_server.storage.migrations` hands it (in its transaction; no alembic.ini)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
