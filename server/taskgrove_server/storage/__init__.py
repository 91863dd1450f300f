"""Persistence: schema, migrations, reads (repository) and grouped writes (writer)."""
