"""Reading an SQLite WAL file from outside the database."""

from __future__ import annotations

import sys
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class WalIndex:
    frames: int
    """The log's last committed frame (`mxFrame`)."""
    copied: int
    """Frames checkpoints copied into the database file (`nBackfill`)."""

    @property
    def left(self) -> int:
        return self.frames - self.copied


def wal_index(shm: Path) -> WalIndex:
    """What the WAL index (the `-shm` file SQLite maps) says now: its first header's
    mxFrame (offset 16) and the checkpoint info's nBackfill (offset 96), both in the
    machine's byte order."""
    with shm.open("rb") as file:
        header = file.read(100)
    return WalIndex(
        frames=int.from_bytes(header[16:20], sys.byteorder),
        copied=int.from_bytes(header[96:100], sys.byteorder),
    )
