"""Reading an SQLite WAL file from outside the database."""

from __future__ import annotations

from pathlib import Path


def wal_state(wal: Path) -> tuple[int, int]:
    """The WAL's size, and its header's checkpoint sequence: SQLite counts each restart
    of the log from its first frame, which it does only once a checkpoint copied all."""
    with wal.open("rb") as file:
        return wal.stat().st_size, int.from_bytes(file.read(16)[12:16], "big")
