"""The group-commit writer on a real SQLite file: batching, guards, events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from taskgrove_server.clock import now_us
from taskgrove_server.events.event import Event
from taskgrove_server.storage.database import create_engine
from taskgrove_server.storage.migrations import migrate
from taskgrove_server.storage.schema import task_events, tasks
from taskgrove_server.storage.writer import Writer


def task_row(task_id: str) -> dict[str, Any]:
    now = now_us()
    return {
        "id": task_id, "parent_id": None, "root_id": task_id, "user_id": "u", "name": task_id,
        "executor": "sleep_executor", "priority": 2, "dependencies": [], "inputs": {},
        "params": {}, "status": "pending", "execution_requested": False, "result": None,
        "error": None, "progress": 0.0, "progress_message": "", "attempt": 0,
        "max_attempts": 1, "retry_backoff_ms": 1000, "timeout_ms": None,
        "original_task_id": None, "has_children": False, "created_us": now,
        "started_us": None, "updated_us": now, "ended_us": None, "version": 1,
    }  # fmt: skip


def event(task_id: str, status: str, previous: str | None) -> Event:
    return Event(
        task_id=task_id, root_id=task_id, user_id="u", parent_id=None, name=task_id,
        type="status" if previous else "created", status=status, previous_status=previous,
        progress=0.0, progress_message="", error=None, attempt=0, is_group=False,
        time_us=now_us(),
    )  # fmt: skip


def state(task_id: str, status: str, expected: str) -> dict[str, Any]:
    return {
        "b_id": task_id, "b_expected": expected, "status": status,
        "execution_requested": True, "attempt": 1, "result": None, "error": None,
        "progress": 0.0, "progress_message": "", "started_us": None, "ended_us": None,
        "updated_us": now_us(),
    }  # fmt: skip


async def test_batches_guards_and_events(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await migrate(engine)
    published: list[list[Event]] = []
    writer = Writer(engine, published.append, url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await writer.start()
    try:
        writer.insert_tasks(
            [task_row("a"), task_row("b")],
            [event("a", "pending", None), event("b", "pending", None)],
        )
        await writer.flush()
        # Three changes queued together commit together, events numbered in order.
        commits = writer.commits
        writer.update_state(
            state("a", "in_progress", "pending"), event("a", "in_progress", "pending")
        )
        writer.update_state(
            state("a", "completed", "in_progress"), event("a", "completed", "in_progress")
        )
        # A transition from a state the row is not in is refused, with its event.
        writer.update_state(
            state("b", "completed", "in_progress"), event("b", "completed", "in_progress")
        )
        await writer.flush()  # queued before the writer ran: one transaction
        assert writer.commits == commits + 1

        async with engine.connect() as conn:
            rows = dict((await conn.execute(select(tasks.c.id, tasks.c.status))).all())
            stored = (await conn.execute(
                select(task_events.c.sequence, task_events.c.task_id, task_events.c.status)
                .order_by(task_events.c.sequence)
            )).all()  # fmt: skip
        assert rows == {"a": "completed", "b": "pending"}
        assert [(t, s) for _, t, s in stored] == [
            ("a", "pending"), ("b", "pending"), ("a", "in_progress"), ("a", "completed"),
        ]  # fmt: skip
        assert [e.sequence for e in stored] == sorted(e.sequence for e in stored)
        assert [e.status for batch in published for e in batch] == [
            "pending", "pending", "in_progress", "completed",
        ]  # fmt: skip
    finally:
        await writer.close()
        await engine.dispose()
