"""A server killed with SIGKILL mid-run, restarted on the same database (DESIGN 4, 7).

Every execution of a task is recorded outside the server: each task runs
`sh -c 'echo NAME >> RECORD; sleep 0.3'` through `command_executor` (enabled by
TASKGROVE_ALLOW_COMMANDS=sh), so the record file counts how often each task really ran.

What must hold after the restart:
- a task that was `completed` before the kill ran exactly once (never again);
- a task that was `in_progress` at the kill runs again while attempts remain
  (max_attempts >= 2), else ends `failed` with reason ABANDONED (max_attempts = 1);
- a task that was `pending` at the kill runs at most once;
- nothing stays pending or in progress; no task ever leaves a terminal status.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.events import history as watch_history
from support.waiting import until
from taskgrove import AsyncClient, Task, TaskEvent, statuses
from taskgrove_server.testing import ServerProcess, sqlite_url

pytestmark = pytest.mark.soak

TASKS = 40
CONCURRENCY = 4
WAIT_S = 90.0


def tree(record: Path, max_attempts: int) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root_task"}]
    for index in range(TASKS):
        name = f"n{index:02d}"
        deps = []
        if index >= 4:
            deps.append(f"n{index - 4:02d}")
        if index >= 6 and index % 3 == 0:
            deps.append(f"n{index - 6:02d}")
        specs.append(
            {
                "id": name,
                "name": name,
                "executor": "command_executor",
                "parent_id": "root",
                "inputs": {"argv": ["sh", "-c", f"echo {name} >> {record}; sleep 0.3"]},
                "dependencies": deps,
                "max_attempts": max_attempts,
                "retry_backoff": 0.05,
            }
        )
    return specs


def commands_writing(record: Path) -> list[int]:
    """PIDs of live processes whose command line names `record` (the tasks' shells)."""
    found = []
    for process in psutil.process_iter():
        try:
            if str(record) in " ".join(process.cmdline()):
                found.append(process.pid)
        except psutil.Error:
            continue  # gone, a zombie, or not ours to read
    return found


def stored_states(db: Path) -> dict[str, tuple[str, int]]:
    """Task name -> (status, attempt) as the database holds it."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, status, attempt FROM tasks WHERE executor IS NOT NULL"
        ).fetchall()
    return {name: (status, attempt) for name, status, attempt in rows}


async def history(client: AsyncClient) -> list[TaskEvent]:
    return await watch_history(client, heartbeat_s=0.1, limit_s=WAIT_S)


async def run_until_mid_flight(client: AsyncClient, root_id: str) -> None:
    """Until a good part has completed while others still run."""
    async with asyncio.timeout(WAIT_S):
        while True:
            tasks = [t for t in await client.get_task_tree(root_id) if not t.is_group]
            counts = Counter(t.status for t in tasks)
            if counts[statuses.COMPLETED] >= 8 and counts[statuses.IN_PROGRESS] >= 2:
                return
            await asyncio.sleep(0.02)


@pytest.fixture
def proc(tmp_path: Path) -> Any:
    process = ServerProcess(
        sqlite_url(tmp_path / "crash.db"),
        extra_env={
            "TASKGROVE_ALLOW_COMMANDS": "sh",
            "TASKGROVE_MAX_CONCURRENCY": str(CONCURRENCY),
        },
    )
    yield process
    process.stop(signal.SIGKILL)


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_sigkill_mid_run_then_restart(
    proc: ServerProcess, tmp_path: Path, command_dir: Path, max_attempts: int
) -> None:
    db = tmp_path / "crash.db"
    record = command_dir / "record.txt"  # written by the commands (as nobody under root)
    record.touch()
    record.chmod(0o666)

    proc.start()
    async with AsyncClient(proc.address) as client:
        created = await client.create_task_tree(tree(record, max_attempts), execute=True)
        root_id = created["root"].id
        names = {task.id: local for local, task in created.items() if local != "root"}
        await run_until_mid_flight(client, root_id)
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    # The killed server's commands die with it (command_executor's launcher): none is
    # left to record a run beside the restarted server's.
    await until(lambda: not commands_writing(record), limit_s=WAIT_S)

    at_kill = stored_states(db)
    assert set(at_kill) == set(names.values())
    completed_before = {n for n, (s, _) in at_kill.items() if s == statuses.COMPLETED}
    running_at_kill = {n for n, (s, _) in at_kill.items() if s == statuses.IN_PROGRESS}
    pending_at_kill = {n for n, (s, _) in at_kill.items() if s == statuses.PENDING}
    assert completed_before and running_at_kill and pending_at_kill
    assert completed_before | running_at_kill | pending_at_kill == set(at_kill)

    proc.start()  # same database, a new port
    async with AsyncClient(proc.address) as client:
        async with asyncio.timeout(WAIT_S):
            root = await client.wait(root_id)
        final: dict[str, Task] = {
            names[t.id]: t for t in await client.get_task_tree(root_id) if not t.is_group
        }
        events = await history(client)

    runs = Counter(record.read_text().split())
    assert set(runs) <= set(final)

    # Nothing stays pending or running.
    assert {t.status for t in final.values()} <= statuses.TERMINAL
    # Completed before the kill: ran exactly once, untouched since.
    for name in completed_before:
        assert final[name].status == statuses.COMPLETED, name
        assert final[name].attempt == 1, name
        assert runs[name] == 1, f"{name} completed before the kill but ran {runs[name]} times"
    if max_attempts >= 2:
        # Running at the kill: recovered and run again (the recorded run of the killed
        # attempt may or may not have happened before the kill).
        for name in running_at_kill:
            task = final[name]
            assert task.status == statuses.COMPLETED, (name, task.error)
            assert task.attempt == at_kill[name][1] + 1, name
            assert 1 <= runs[name] <= 2, name
        for name in pending_at_kill:
            assert final[name].status == statuses.COMPLETED, (name, final[name].error)
            assert runs[name] == 1, name
        assert root.status == statuses.COMPLETED
    else:
        for name in running_at_kill:
            task = final[name]
            assert task.status == statuses.FAILED, name
            assert task.error is not None and task.error.reason == "ABANDONED", name
            assert task.attempt == 1
            assert runs[name] <= 1, name
        for name in pending_at_kill:
            task = final[name]
            if task.status == statuses.COMPLETED:
                assert runs[name] == 1, name
            else:
                assert task.status == statuses.FAILED, name
                assert task.error is not None and task.error.reason == "DEPENDENCY_FAILED"
                assert runs[name] == 0, name
        assert root.status == statuses.FAILED

    # The event log agrees: one start per completed-before-kill task, and no task ever
    # left a terminal status.
    by_task: dict[str, list[TaskEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.sequence):
        if event.type == "status_changed" and event.task_id in names:
            by_task[names[event.task_id]].append(event)
    for name in completed_before:
        starts = [e for e in by_task[name] if e.status == statuses.IN_PROGRESS]
        assert len(starts) == 1, name
    for name, seen in by_task.items():
        terminal = [i for i, e in enumerate(seen) if e.status in statuses.TERMINAL]
        assert len(terminal) == 1 and terminal[0] == len(seen) - 1, (
            name,
            [e.status for e in seen],
        )
        assert seen[-1].status == final[name].status
