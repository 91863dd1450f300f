"""How often the SQLite writer checkpoints: about every 1,000 pages of WAL, learned from
the frames each checkpoint finds."""

from __future__ import annotations

from taskgrove_server.storage.checkpoint_pace import (
    CATCH_UP_PAGES,
    FIRST_AFTER_ITEMS,
    MAX_COPIES,
    MAX_ITEMS,
    MIN_ITEMS,
    CheckpointPace,
)


def test_the_first_checkpoint_comes_after_a_fixed_count_of_items() -> None:
    pace = CheckpointPace(target_pages=1000)
    pace.committed(FIRST_AFTER_ITEMS - 1)
    assert not pace.due
    pace.committed(1)
    assert pace.due


def test_items_that_write_many_pages_bring_checkpoints_sooner() -> None:
    pace = CheckpointPace(target_pages=1000)
    pace.committed(250)
    pace.checkpointed(frames=1000)  # 4 pages an item
    assert pace.after_items == 250
    pace.committed(250)
    pace.checkpointed(frames=2000)  # 8 pages an item
    assert pace.after_items == 125
    pace.committed(124)
    assert not pace.due
    pace.committed(1)
    assert pace.due


def test_the_count_at_most_doubles_at_a_time() -> None:
    """A bulk insert of few pages an item, then items of many (a tree created, then a
    chain run): the count learned from the insert would let the log grow far past the
    target."""
    pace = CheckpointPace(target_pages=1000)
    pace.committed(20_000)
    pace.checkpointed(frames=2_000)  # 0.1 pages an item: 10,000 wanted
    assert pace.after_items == 2 * FIRST_AFTER_ITEMS
    for _ in range(10):
        pace.committed(pace.after_items)
        pace.checkpointed(frames=pace.after_items // 100)
    assert pace.after_items == MAX_ITEMS


def test_the_count_has_bounds_and_a_failed_checkpoint_teaches_nothing() -> None:
    pace = CheckpointPace(target_pages=1000)
    pace.committed(250)
    pace.checkpointed(frames=1_000_000)
    assert pace.after_items == MIN_ITEMS
    pace.committed(64)
    pace.checkpointed(frames=0)  # failed (or not in WAL mode)
    assert pace.after_items == MIN_ITEMS
    assert not pace.due  # the items counted were let go with it


def test_a_copy_is_overdue_once_as_many_items_again_were_committed_meanwhile() -> None:
    pace = CheckpointPace(target_pages=1000)
    pace.committed(3 * FIRST_AFTER_ITEMS)  # one large batch: due, not overdue
    assert not pace.overdue  # no copy under way: nothing to wait for
    pace.copy_started()
    assert pace.due and not pace.overdue
    pace.committed(FIRST_AFTER_ITEMS - 1)
    assert not pace.overdue
    pace.committed(1)
    assert pace.overdue
    pace.checkpointed(frames=4000)  # 4 pages an item: the count stays
    assert not pace.due and not pace.overdue
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()
    pace.committed(FIRST_AFTER_ITEMS)
    assert pace.overdue


def test_a_copy_left_behind_by_many_pages_is_followed_by_another() -> None:
    """Before anything is learned an item is taken for 4 pages (1,000 for 250)."""
    pace = CheckpointPace(target_pages=1000)
    assert not pace.copy_again(frames=500)  # no copy under way
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()
    pace.committed(CATCH_UP_PAGES // 4)  # 48 pages written during the copy: few
    assert not pace.copy_again(frames=500)
    pace.committed(1)  # 52
    assert pace.copy_again(frames=500)
    pace.committed(CATCH_UP_PAGES // 4)  # counted from the second copy's start
    assert not pace.copy_again(frames=500)


def test_copies_beside_the_writer_stop_at_a_bound_and_once_overdue() -> None:
    pace = CheckpointPace(target_pages=1000)
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()
    for _ in range(MAX_COPIES - 1):
        pace.committed(20)
        assert pace.copy_again(frames=500)
    pace.committed(20)
    assert not pace.copy_again(frames=500)  # MAX_COPIES made: the writer's step copies the rest
    pace.checkpointed(frames=1000)
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()  # the count of copies starts over with the checkpoint
    pace.committed(20)
    assert pace.copy_again(frames=500)
    pace.committed(pace.after_items)  # the log grew by the target since the first copy
    assert pace.overdue
    assert not pace.copy_again(frames=500)


def test_a_log_that_started_over_before_the_step_is_learned_from_its_copies() -> None:
    """A copy beside the writer copied the whole log (1,000 frames for 250 items), the
    next commit started it over, and the writer's step found 3 frames: the count is
    learned from the 1,000, not doubled (which, thrice running, let the log grow past
    three times the target)."""
    pace = CheckpointPace(target_pages=1000)
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()
    assert not pace.copy_again(frames=1000)  # nothing written meanwhile
    pace.checkpointed(frames=3)
    assert pace.after_items == FIRST_AFTER_ITEMS
    # The next checkpoint's step alone counts again (no copy found more).
    pace.committed(FIRST_AFTER_ITEMS)
    pace.copy_started()
    pace.checkpointed(frames=500)
    assert pace.after_items == 2 * FIRST_AFTER_ITEMS
