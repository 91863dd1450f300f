"""When the SQLite writer checkpoints: once its WAL holds about 1,000 pages.

SQLite's own default is a checkpoint per 1,000 pages of WAL, but Python's sqlite3 does
not tell how many pages a commit wrote. The pace counts the rows, changes and events
committed instead, and learns how many pages they make from each checkpoint, which
reports the frames it found.

A fixed count (250 items) was eightfold off across shapes, measured on 10,000-task
trees: a chain's step writes 1.6 pages an item, a flat tree's batches of 64 claims and
completions 0.19. The flat run checkpointed every other commit, the chain every 60 steps.

A checkpoint's bulk is copied beside the writer; what the writer committed meanwhile is
copied by the writer's own connection, between two batches, which wait for it. That step
took 1.7-3.5 ms in a flat 10,000-task run (the 200-300 pages written during a 5-7 ms
copy; SQLite copies about 7 us a page plus 0.5 ms of syncs), and the tasks whose claims
waited for it (32 a checkpoint) were the slowest 4 % of the run. So when the writer wrote
more than CATCH_UP_PAGES during a copy, another copy beside it takes those first (up to
MAX_COPIES): the step then finds 33-75 pages left and takes 1.0-1.8 ms (two traced runs).
"""

from __future__ import annotations

TARGET_PAGES = 1000
"""Pages of WAL between checkpoints: SQLite's default (`wal_autocheckpoint`)."""
FIRST_AFTER_ITEMS = 250
"""Before a checkpoint has measured anything: a CreateTask writes about a dozen pages
for its three items."""
MIN_ITEMS = 64
MAX_ITEMS = 20_000
CATCH_UP_PAGES = 50
"""Pages (estimated) written during a copy above which another copy beside the writer
pays: fewer cost the writer's own step about 0.35 ms, next to its 0.5 ms of syncs."""
MAX_COPIES = 3
"""Copies beside the writer per checkpoint. A catch-up copy took 2-3 ms in a busy flat run
whatever it copied, the writer writing 40-60 pages meanwhile, so a fourth would leave
about as many as the third (not measured)."""


class CheckpointPace:
    def __init__(self, target_pages: int = TARGET_PAGES) -> None:
        self._target_pages = target_pages
        self.after_items = FIRST_AFTER_ITEMS
        """Items to commit between two checkpoints, as last learned."""
        self._written = 0
        self._copy_from: int | None = None
        """Items counted when the checkpoint's first copy began (None: no copy under way)."""
        self._latest_from = 0
        """Items counted when its latest copy began."""
        self._copies = 0
        """Copies made for the checkpoint under way."""
        self._copies_found = 0
        """The most frames a copy of the checkpoint under way found in the log."""

    def committed(self, items: int) -> None:
        self._written += items

    @property
    def due(self) -> bool:
        return self._written >= self.after_items

    def copy_started(self) -> None:
        """A checkpoint's copy began; `checkpointed` ends it."""
        self._copy_from = self._latest_from = self._written
        self._copies = 1

    def copy_again(self, frames: int) -> bool:
        """The latest copy beside the writer ended, having found `frames` in the log:
        whether another should copy what the writer wrote meanwhile (then counted as
        begun) before the writer's own step. Not once overdue: the log's bound counts from
        the first copy."""
        self._copies_found = max(self._copies_found, frames)
        if self._copy_from is None or self.overdue or self._copies >= MAX_COPIES:
            return False
        pages_per_item = self._target_pages / self.after_items
        if (self._written - self._latest_from) * pages_per_item <= CATCH_UP_PAGES:
            return False
        self._latest_from = self._written
        self._copies += 1
        return True

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
        a count that lets the log grow twentyfold past the target.

        A copy beside the writer may have copied the whole log, which the next commit then
        started over: the step finds only the frames since (3 for 400 items, seen). So the
        most a copy of this checkpoint found counts too; else the count doubled thrice
        running and the log grew past three times the target."""
        written, self._written = self._written, 0
        frames, self._copies_found = max(frames, self._copies_found), 0
        self._copy_from = None
        if written <= 0 or frames <= 0:
            return
        wanted = int(self._target_pages * written / frames)
        self.after_items = max(MIN_ITEMS, min(MAX_ITEMS, wanted, 2 * self.after_items))
