"""Reading an SQLite WAL file from outside the database."""

from __future__ import annotations

from pathlib import Path

from taskgrove_server.storage.checkpoint_pace import TARGET_PAGES

FRAME_BYTES = 4096 + 24
"""A page of the default size and its frame header."""
LARGEST_WAL_BYTES = 3 * TARGET_PAGES * FRAME_BYTES
"""The writer starts a checkpoint at the target and holds its batches back once the log
grew by the target again while the copy runs: three times is the log past both."""


def wal_state(wal: Path) -> tuple[int, int]:
    """The WAL's size, and its header's checkpoint sequence: SQLite counts each restart
    of the log from its first frame, which it does only once a checkpoint copied all."""
    with wal.open("rb") as file:
        return wal.stat().st_size, int.from_bytes(file.read(16)[12:16], "big")
