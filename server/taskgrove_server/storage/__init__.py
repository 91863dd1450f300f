"""Persistence, and the only room with SQL: schema and migrations, reads (`TaskReads`,
`EventLog`), and the group-commit `Writer` that commits every change with its events.
Rows leave this package as `TaskRow` records; `MemoryStore` stands in for tests."""
