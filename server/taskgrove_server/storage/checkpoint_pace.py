"""When the SQLite writer checkpoints: once its WAL holds about 1,000 pages.

SQLite's own default is a checkpoint per 1,000 pages of WAL, but Python's sqlite3 does
not tell how many pages a commit wrote. The pace counts the rows, changes and events
committed instead, and learns how many pages they make from each checkpoint, which
reports the frames it found.

A fixed count (250 items) was eightfold off across shapes, measured on 10,000-task
trees: a chain's step writes 1.6 pages an item, a flat tree's batches of 64 claims and
completions 0.19. The flat run checkpointed every other commit, the chain every 60 steps.
"""

from __future__ import annotations

TARGET_PAGES = 1000
"""Pages of WAL between checkpoints: SQLite's default (`wal_autocheckpoint`)."""
FIRST_AFTER_ITEMS = 250
"""Before a checkpoint has measured anything: a CreateTask writes about a dozen pages
for its three items."""
MIN_ITEMS = 64
MAX_ITEMS = 20_000


class CheckpointPace:
    def __init__(self, target_pages: int = TARGET_PAGES) -> None:
        self._target_pages = target_pages
        self.after_items = FIRST_AFTER_ITEMS
        """Items to commit between two checkpoints, as last learned."""
        self._written = 0
        self._copy_from: int | None = None
        """Items counted when the copy under way began (None: no copy under way)."""

    def committed(self, items: int) -> None:
        self._written += items

    @property
    def due(self) -> bool:
        return self._written >= self.after_items

    def copy_started(self) -> None:
        """A checkpoint's copy began; `checkpointed` ends it."""
        self._copy_from = self._written

    @property
    def overdue(self) -> bool:
        """As many items again committed since the copy began: the log has grown by about
        the target meanwhile. A copy slower than the writer (a slow disk) must not let it
        grow without bound (CI, before this: 2,040 frames where 1,000 were due). Counted
        from the copy's start, not from the last checkpoint: one batch of twice the count
        (a 10,000-task tree's insert, 0.1 pages an item) is not a log twice the target."""
        start = self._copy_from
        return start is not None and self._written - start >= self.after_items

    def checkpointed(self, frames: int) -> None:
        """A checkpoint found `frames` pages in the log, written by the items committed
        since the last one. (A log that readers kept from being copied whole holds older
        frames too: the estimate errs toward checkpointing sooner.)

        The count at most doubles at a time: one batch unlike the next (a 10,000-task
        tree's insert writes 0.1 pages an item, the chain run after it 1.6) must not set
        a count that lets the log grow twentyfold past the target."""
        written, self._written = self._written, 0
        self._copy_from = None
        if written <= 0 or frames <= 0:
            return
        wanted = int(self._target_pages * written / frames)
        self.after_items = max(MIN_ITEMS, min(MAX_ITEMS, wanted, 2 * self.after_items))
