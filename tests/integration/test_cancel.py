"""CancelTask (DESIGN 3, 4): a cancelled subtree ends `cancelled`, running executors (and the
processes a `command_executor` started) are interrupted, dependents elsewhere follow with
DEPENDENCY_CANCELLED, groups derive `cancelled`, and a finished task never flips.

The reply of CancelTask lists the executable tasks the request cancelled; groups are not
listed (their status is derived from their subtree and follows on its own).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from support.events import history
from support.pids import process_gone, read_pid, until_gone
from support.trees import group, ids, sleeper
from support.waiting import WAIT_S, wait_finished
from support.waiting import until_task as until
from taskgrove import AsyncClient, TaskEvent, statuses
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

if TYPE_CHECKING:
    from conftest import ServerFactory


ALLOWED_TRANSITIONS = {
    (statuses.PENDING, statuses.IN_PROGRESS),
    (statuses.PENDING, statuses.CANCELLED),
    (statuses.PENDING, statuses.FAILED),
    (statuses.IN_PROGRESS, statuses.COMPLETED),
    (statuses.IN_PROGRESS, statuses.FAILED),
    (statuses.IN_PROGRESS, statuses.CANCELLED),
    (statuses.IN_PROGRESS, statuses.PENDING),
}


# ------------------------------------------------------------------ helpers


def status_events(events: list[TaskEvent]) -> dict[str, list[TaskEvent]]:
    by_task: dict[str, list[TaskEvent]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.sequence):
        if event.type == "status_changed":
            by_task[event.task_id].append(event)
    return by_task


async def find_child(predicate: Callable[[psutil.Process], bool]) -> psutil.Process:
    """A descendant process of this (the test's, hence the in-process server's) process."""
    me = psutil.Process(os.getpid())
    async with asyncio.timeout(WAIT_S):
        while True:
            for child in me.children(recursive=True):
                try:
                    if predicate(child):
                        return child
                except psutil.NoSuchProcess:
                    continue
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------ cancelling a subtree


async def test_cancel_running_subtree_cancels_everything_unfinished_below(
    client: AsyncClient,
) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task", "user_id": "alice"},
            sleeper("quick", 0),
            sleeper("long_a", 30),
            group("g"),
            sleeper("long_b", 30, parent="g"),
            # Waits (pending) for long_b.
            sleeper("after_b", 0, parent="g", dependencies=["long_b"]),
            # An executable task with a child of its own: both are cancelled.
            sleeper("long_parent", 30),
            sleeper("long_child", 30, parent="long_parent"),
        ],
        execute=True,
    )
    tid = ids(created)
    other = await client.create_task_tree(
        [
            {"id": "oroot", "name": "other_tree", "user_id": "alice"},
            sleeper("needs_b", 0, parent="oroot", dependencies=[tid["long_b"]]),
            sleeper(
                "optional_b",
                0,
                parent="oroot",
                dependencies=[{"id": tid["long_b"], "required": False}],
            ),
        ],
        execute=True,
    )
    oid = ids(other)
    await until(client, tid["quick"], lambda t: t.status == statuses.COMPLETED)
    for name in ("long_a", "long_b", "long_parent", "long_child"):
        await until(client, tid[name], lambda t: t.status == statuses.IN_PROGRESS)
    quick_before = await client.get_task(tid["quick"])

    cancelled = await client.cancel_task(tid["root"])

    expected = {tid[n] for n in ("long_a", "long_b", "after_b", "long_parent", "long_child")}
    assert sorted(cancelled) == sorted(expected)  # exactly them, each once
    root = await wait_finished(client, tid["root"])
    assert root.status == statuses.CANCELLED
    tree = {t.name: t for t in await client.get_task_tree(tid["root"])}
    for name in ("long_a", "long_b", "after_b", "long_parent", "long_child"):
        task = tree[name]
        assert task.status == statuses.CANCELLED, name
        assert task.error is not None and task.error.reason == "CANCELLED", name
        assert task.end_time is not None
    # The completed task is untouched; the group derives `cancelled`.
    assert tree["quick"] == quick_before
    assert tree["g"].status == statuses.CANCELLED

    # Dependents in another tree follow, and are not listed in the reply.
    needs_b = await wait_finished(client, oid["needs_b"])
    assert needs_b.status == statuses.CANCELLED
    assert needs_b.error is not None
    assert needs_b.error.reason == "DEPENDENCY_CANCELLED"
    assert needs_b.error.details.get("dependency_id") == tid["long_b"]
    assert needs_b.attempt == 0  # never ran
    # An optional dependency that was cancelled is terminal: the dependent runs.
    optional_b = await wait_finished(client, oid["optional_b"])
    assert optional_b.status == statuses.COMPLETED
    other_root = await wait_finished(client, oid["oroot"])
    assert other_root.status == statuses.CANCELLED

    # The cancelled tasks had their status event with the reason.
    by_task = status_events(await history(client))
    for task_id in expected:
        last = by_task[task_id][-1]
        assert last.status == statuses.CANCELLED
        assert last.error is not None and last.error.reason == "CANCELLED"


async def test_cancel_is_idempotent_and_leaves_finished_tasks_alone(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("done", 0),
            sleeper("long", 30),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["done"], lambda t: t.status == statuses.COMPLETED)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)

    # Cancelling a completed task changes nothing (not even its etag).
    done_before = await client.get_task(tid["done"])
    assert await client.cancel_task(tid["done"]) == []
    assert await client.get_task(tid["done"]) == done_before

    assert await client.cancel_task(tid["root"]) == [tid["long"]]
    await wait_finished(client, tid["root"])
    before = await client.get_task_tree(tid["root"])
    events_before = await history(client)

    # A second cancel (of the root or of the cancelled task) cancels nothing and changes
    # nothing: no new events, same tasks.
    assert await client.cancel_task(tid["root"]) == []
    assert await client.cancel_task(tid["long"]) == []
    assert await client.get_task_tree(tid["root"]) == before
    assert [e.sequence for e in await history(client)] == [e.sequence for e in events_before]


async def test_cancel_pending_tree_that_never_ran(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("a", 0), sleeper("b", 0)]
    )
    tid = ids(created)
    cancelled = await client.cancel_task(tid["root"])
    assert sorted(cancelled) == sorted([tid["a"], tid["b"]])
    for name in ("a", "b"):
        task = await client.get_task(tid[name])
        assert task.status == statuses.CANCELLED
        assert task.attempt == 0
    assert (await client.get_task(tid["root"])).status == statuses.CANCELLED
    # Executing a cancelled tree later runs nothing.
    await client.execute_task(tid["root"])
    await asyncio.sleep(0.1)
    for name in ("a", "b"):
        assert (await client.get_task(tid[name])).status == statuses.CANCELLED


async def test_cancel_of_one_task_lets_its_siblings_finish(client: AsyncClient) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("long", 30),
            sleeper("sibling", 0.2),
            sleeper("dependent", 0, dependencies=["long"]),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)
    assert await client.cancel_task(tid["long"]) == [tid["long"]]
    root = await wait_finished(client, tid["root"])
    assert root.status == statuses.CANCELLED
    assert (await client.get_task(tid["sibling"])).status == statuses.COMPLETED
    dependent = await client.get_task(tid["dependent"])
    assert dependent.status == statuses.CANCELLED
    assert dependent.error is not None and dependent.error.reason == "DEPENDENCY_CANCELLED"


async def test_cancel_of_queued_tasks_means_they_never_start(make_server: ServerFactory) -> None:
    client = make_server.client(await make_server(max_concurrency=1))
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("long", 30, priority=0),
            group("queued"),
            sleeper("q1", 0, parent="queued"),
            sleeper("q2", 0, parent="queued"),
            sleeper("after", 0, priority=3),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["long"], lambda t: t.status == statuses.IN_PROGRESS)
    assert sorted(await client.cancel_task(tid["queued"])) == sorted([tid["q1"], tid["q2"]])
    assert await client.cancel_task(tid["long"]) == [tid["long"]]
    after = await wait_finished(client, tid["after"])
    assert after.status == statuses.COMPLETED
    for name in ("q1", "q2"):
        task = await client.get_task(tid[name])
        assert (task.status, task.attempt) == (statuses.CANCELLED, 0)
    by_task = status_events(await history(client))
    for name in ("q1", "q2"):
        assert [e.status for e in by_task[tid[name]]] == [statuses.CANCELLED]


# ------------------------------------------------------------------ real processes


@pytest.fixture
async def command_client(make_server: ServerFactory) -> AsyncClient:
    instance = await make_server(allowed_commands=["sleep", "sh"])
    return make_server.client(instance)


async def test_cancel_kills_a_running_command(command_client: AsyncClient) -> None:
    client = command_client
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {
                "id": "cmd",
                "name": "cmd",
                "executor": "command_executor",
                "parent_id": "root",
                "inputs": {"argv": ["sleep", "61.25"]},
            },
        ],
        execute=True,
    )
    tid = ids(created)
    child = await find_child(
        lambda p: p.name() == "sleep" and p.cmdline()[1:] == ["61.25"],
    )
    pid = child.pid
    await until(client, tid["cmd"], lambda t: t.status == statuses.IN_PROGRESS)

    assert await client.cancel_task(tid["root"]) == [tid["cmd"]]
    await until_gone(pid)
    cmd = await wait_finished(client, tid["cmd"])
    assert cmd.status == statuses.CANCELLED
    assert cmd.error is not None and cmd.error.reason == "CANCELLED"
    assert (await client.get_task(tid["root"])).status == statuses.CANCELLED


async def test_cancel_kills_the_whole_process_group(
    command_client: AsyncClient, command_dir: Path
) -> None:
    client = command_client
    leader_file = command_dir / "leader.pid"
    worker_file = command_dir / "worker.pid"
    script = f"sleep 60 & echo $! > {worker_file}; echo $$ > {leader_file}; wait"
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {
                "id": "cmd",
                "name": "cmd",
                "executor": "command_executor",
                "parent_id": "root",
                "inputs": {"argv": ["sh", "-c", script]},
            },
        ],
        execute=True,
    )
    tid = ids(created)
    leader = await read_pid(leader_file)
    worker = await read_pid(worker_file)
    assert not process_gone(leader) and not process_gone(worker)

    assert await client.cancel_task(tid["cmd"]) == [tid["cmd"]]
    await until_gone(leader)
    await until_gone(worker)  # started by the shell, in the same process group
    assert (await wait_finished(client, tid["cmd"])).status == statuses.CANCELLED


async def test_command_timeout_kills_the_process(
    command_client: AsyncClient, command_dir: Path
) -> None:
    client = command_client
    pid_file = command_dir / "cmd.pid"
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {
                "id": "cmd",
                "name": "cmd",
                "executor": "command_executor",
                "parent_id": "root",
                "inputs": {"argv": ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]},
                "timeout": 0.5,
            },
        ],
        execute=True,
    )
    tid = ids(created)
    pid = await read_pid(pid_file)
    cmd = await wait_finished(client, tid["cmd"])
    assert cmd.status == statuses.FAILED
    assert cmd.error is not None and cmd.error.reason == "TIMEOUT"
    await until_gone(pid)


# ------------------------------------------------------------------ cancel racing completion


def race_tree() -> list[dict[str, Any]]:
    return [
        {"id": "root", "name": "root_task"},
        group("g1"),
        sleeper("a", 0, parent="g1"),
        sleeper("b", 0.01, parent="g1", dependencies=["a"]),
        sleeper("c", 0.02, parent="g1"),
        group("g2"),
        sleeper("d", 0, parent="g2", dependencies=["b"]),
        sleeper("e", 0.005, parent="g2", dependencies=[{"id": "c", "required": False}]),
        sleeper("f", 0.03, parent="g2"),
        sleeper("p", 0),
        sleeper("q", 0.01, parent="p"),
        sleeper("r", 0, dependencies=["g1"]),
    ]


async def test_cancel_racing_completion_never_flips_a_finished_task(
    client: AsyncClient,
) -> None:
    rounds = 30
    targets = ["root", "g1", "b", "root", "p", "g2"]
    root_ids = []
    for index in range(rounds):
        created = await client.create_task_tree(race_tree(), execute=True)
        tid = ids(created)
        root_ids.append(tid["root"])
        await asyncio.sleep((index % 10) * 0.006)
        target = targets[index % len(targets)]
        below = {t.id for t in await client.get_task_tree(tid[target])}
        cancelled = await client.cancel_task(tid[target])
        assert len(cancelled) == len(set(cancelled))
        assert set(cancelled) <= below, f"round {index}: cancelled outside {target}"
        await wait_finished(client, tid["root"])
        final = {t.id: t for t in await client.get_task_tree(tid["root"])}
        for task in final.values():
            assert task.status in statuses.TERMINAL, (index, task.name, task.status)
        # The reply lists exactly the tasks this request cancelled.
        by_request = {
            t.id
            for t in final.values()
            if t.status == statuses.CANCELLED
            and t.error is not None
            and t.error.reason == "CANCELLED"
        }
        assert set(cancelled) == by_request, f"round {index} (target {target})"
        for task_id in cancelled:
            assert not final[task_id].is_group

    by_task = status_events(await history(client))
    finals = {}
    for root_id in root_ids:
        finals.update({t.id: t for t in await client.get_task_tree(root_id)})
    assert set(by_task) <= set(finals)
    for task_id, task in finals.items():
        seen = by_task.get(task_id, [])
        assert seen, f"{task.name} has no status event"
        terminal = [i for i, e in enumerate(seen) if e.status in statuses.TERMINAL]
        assert len(terminal) == 1, (task.name, [e.status for e in seen])
        assert terminal[0] == len(seen) - 1, (task.name, [e.status for e in seen])
        assert seen[-1].status == task.status
        previous = statuses.PENDING
        for event in seen:
            assert event.previous_status == previous, (task.name, [e.status for e in seen])
            assert (previous, event.status) in ALLOWED_TRANSITIONS, (task.name, event)
            previous = event.status


async def test_cancel_just_after_completion_with_a_slow_commit_does_not_flip_it(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Deterministic form of the race above. The completion of a tree's last task is
    decided in memory first and committed a moment later; here the commit is held back by
    another connection holding SQLite's write lock (as a slow disk or a busy batch would).
    A CancelTask arriving in that window must not cancel (or report) the completed task,
    and the event log must not show a second terminal status."""
    gate = asyncio.Event()

    async def gated(context: ExecutionContext) -> Any:
        async with asyncio.timeout(WAIT_S):
            await gate.wait()
        return "done"

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="gated", run=gated))
    db_path = tmp_path / "slow-commit.db"
    instance = await make_server(registry=registry, db_url=f"sqlite+aiosqlite:///{db_path}")
    client = make_server.client(instance)
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "t", "name": "t", "executor": "gated", "parent_id": "root"},
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["t"], lambda t: t.status == statuses.IN_PROGRESS)

    blocker = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: commits wait
        gate.set()  # the task completes (in memory); its commit waits for the lock
        await asyncio.sleep(0.2)
        cancel = asyncio.create_task(client.cancel_task(tid["root"]))
        await asyncio.sleep(0.2)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    async with asyncio.timeout(WAIT_S):
        cancelled = await cancel

    task = await wait_finished(client, tid["t"])
    assert task.status == statuses.COMPLETED
    by_task = status_events(await history(client))
    assert [e.status for e in by_task[tid["t"]]] == [statuses.IN_PROGRESS, statuses.COMPLETED]
    assert cancelled == [], "CancelTask reported a task that had completed"
    assert (await client.get_task(tid["root"])).status == statuses.COMPLETED
