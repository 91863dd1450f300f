"""Acceptance: the examples of Tutorial 2 ("Building Task Trees") run unchanged, except for
the import line, against a real `taskgrove serve` subprocess.

Each script in `tutorial/` runs as its own process (`sys.executable script`) with
TASKGROVE_ADDRESS naming the server; the tests check what it prints and then ask the server
(`taskgrove.AsyncClient`) what it stored and ran.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.processes import Finished
from taskgrove import AsyncClient, Task, TaskManager, TaskTreeNode, create_session, statuses

if TYPE_CHECKING:
    from taskgrove_server.testing import ServerProcess

TUTORIAL = Path(__file__).parent / "tutorial"
USER = "tutorial_user"
SCRIPT_TIMEOUT = 60.0
RPC_TIMEOUT = 30.0

pytestmark = pytest.mark.timeout(90)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class ScriptRun(Finished):
    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def run_python(
    args: list[str],
    address: str,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> ScriptRun:
    """`python *args` (the tests' own interpreter unless told) with TASKGROVE_ADDRESS=address
    added to `env` (default: this process's environment), bounded by 60 s."""
    environment = {**(os.environ if env is None else env), "TASKGROVE_ADDRESS": address}
    process = await asyncio.create_subprocess_exec(
        python,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        cwd=TUTORIAL,
    )
    try:
        async with asyncio.timeout(SCRIPT_TIMEOUT):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        partial = ScriptRun(-1, stdout.decode(), stderr.decode())
        tasks = "\n".join(
            f"  {t.id} {t.name} parent={t.parent_id} {t.status} {t.error}"
            for t in await user_tasks(address)
        )
        pytest.fail(
            f"{args[-1]} did not finish within {SCRIPT_TIMEOUT:.0f}s; killed\n"
            f"{partial.explain()}\n--- server tasks of {USER}\n{tasks}"
        )
    assert process.returncode is not None
    return ScriptRun(process.returncode, stdout.decode(), stderr.decode())


async def run_script(
    script: str,
    address: str,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> ScriptRun:
    """Run one script of `tutorial/` as the tutorial's reader would: `python script.py`."""
    return await run_python([str(TUTORIAL / script)], address, python, env)


async def run_ok(
    script: str,
    address: str,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> ScriptRun:
    run = await run_script(script, address, python, env)
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    return run


async def user_tasks(address: str) -> list[Task]:
    """Every task of the tutorial user the server holds, oldest first."""
    async with asyncio.timeout(RPC_TIMEOUT), AsyncClient(address) as client:
        return [task async for task in client.list_tasks(user_id=USER)]


async def trees(address: str) -> list[list[Task]]:
    """For every root of the tutorial user: GetTaskTree of it (parents before children)."""
    async with asyncio.timeout(RPC_TIMEOUT), AsyncClient(address) as client:
        roots = [task async for task in client.list_tasks(user_id=USER, roots_only=True)]
        return [await client.get_task_tree(root.id) for root in roots]


def children_of(tasks: Iterable[Task], parent: Task) -> list[Task]:
    return [task for task in tasks if task.parent_id == parent.id]


def shape(tasks: list[Task]) -> Any:
    """The tree as nested lists of child shapes (leaf = []), children in creation order."""
    by_parent: dict[str | None, list[Task]] = {}
    for task in tasks:
        by_parent.setdefault(task.parent_id, []).append(task)

    def of(task: Task) -> list[Any]:
        kids = sorted(by_parent.get(task.id, []), key=lambda t: (t.create_time, t.id))
        return [of(kid) for kid in kids]

    return of(tasks[0])


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_cpu(info: dict[str, Any]) -> None:
    assert isinstance(info["cores"], int) and info["cores"] >= 1, info
    assert isinstance(info["logical_cores"], int) and info["logical_cores"] >= 1, info
    assert info["logical_cores"] >= info["cores"], info
    assert isinstance(info["brand"], str) and info["brand"].strip(), info
    assert is_number(info["percent"]) and 0 <= info["percent"] <= 100, info


def assert_memory(info: dict[str, Any]) -> None:
    assert isinstance(info["total_bytes"], int) and info["total_bytes"] > 0, info
    assert 0 <= info["available_bytes"] <= info["total_bytes"], info
    assert 0 < info["used_bytes"] <= info["total_bytes"], info


def assert_disk(info: dict[str, Any]) -> None:
    assert isinstance(info["total_bytes"], int) and info["total_bytes"] > 0, info
    assert 0 <= info["free_bytes"] <= info["total_bytes"], info
    assert 0 <= info["used_bytes"] <= info["total_bytes"], info


def assert_all(info: dict[str, Any]) -> None:
    assert set(info) >= {"cpu", "memory", "disk"}, info
    assert_cpu(info["cpu"])
    assert_memory(info["memory"])
    assert_disk(info["disk"])


CHECK_RESOURCE = {
    "cpu": assert_cpu,
    "memory": assert_memory,
    "disk": assert_disk,
    "all": assert_all,
}


def assert_info_task(task: Task) -> None:
    """A completed system_info_executor task with real figures for its `resource`."""
    assert task.name == "system_info_executor"
    assert task.executor == "system_info_executor"
    assert task.status == statuses.COMPLETED, task
    assert task.error is None, task
    CHECK_RESOURCE[task.inputs["resource"]](task.result)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- Part 2


async def test_part2_simple_tree(server_process: ServerProcess) -> None:
    run = await run_ok("part2_simple_tree.py", server_process.address)
    await check_part2_simple_tree(run, server_process.address)


async def check_part2_simple_tree(run: ScriptRun, address: str) -> None:
    """What part2_simple_tree.py printed, and what the server at `address` then holds."""
    assert "Child task status: completed" in run.lines, run.explain()
    printed = [line for line in run.lines if line.startswith("Child task result: ")]
    assert len(printed) == 1, run.explain()
    result = ast.literal_eval(printed[0].removeprefix("Child task result: "))
    assert isinstance(result, dict), result
    assert_cpu(result)

    [tree] = await trees(address)
    root, child = tree
    assert (root.name, root.executor, root.priority) == ("root_task", None, 1)
    assert root.status == statuses.COMPLETED
    assert child.parent_id == root.id and child.root_id == root.id
    assert (child.priority, child.inputs) == (2, {"resource": "cpu"})
    assert_info_task(child)
    assert child.result == result  # what the script printed is what the server stored


# --------------------------------------------------------------------------- Part 3


async def test_part3_multiple_children(server_process: ServerProcess) -> None:
    run = await run_ok("part3_multiple_children.py", server_process.address)

    [tree] = await trees(server_process.address)
    root = tree[0]
    children = children_of(tree, root)
    assert shape(tree) == [[], [], []]
    assert root.status == statuses.COMPLETED
    assert run.lines == [f"{child.id}: completed" for child in children], run.explain()
    by_resource = {child.inputs["resource"]: child for child in children}
    assert set(by_resource) == {"cpu", "memory", "disk"}
    for child in children:
        assert_info_task(child)
    assert by_resource["disk"].result["free_bytes"] <= by_resource["disk"].result["total_bytes"]
    assert by_resource["memory"].result["total_bytes"] > 0


# --------------------------------------------------------------------------- Part 4


async def test_part4_multi_level(server_process: ServerProcess) -> None:
    run = await run_ok("part4_multi_level.py", server_process.address)
    assert run.lines == ["Tree execution completed!"], run.explain()

    [tree] = await trees(server_process.address)
    assert shape(tree) == [[[]], [[]]]
    root = tree[0]
    assert root.status == statuses.COMPLETED
    assert all(task.root_id == root.id for task in tree)
    children = children_of(tree, root)
    assert [c.inputs["resource"] for c in children] == ["cpu", "memory"]
    for child in children:
        assert child.priority == 2
        assert_info_task(child)
        [grandchild] = children_of(tree, child)
        assert (grandchild.priority, grandchild.inputs) == (3, {"resource": "all"})
        assert_info_task(grandchild)
        assert set(grandchild.result) >= {"cpu", "memory", "disk"}


# --------------------------------------------------------------------------- Part 5


async def test_part5_helper_as_written_fails_with_parent_not_found(
    server_process: ServerProcess,
) -> None:
    """The helper passes config ids ("root") as parent_id: the tutorial's own Mistake 3."""
    run = await run_script("part5_helper_as_written.py", server_process.address)

    assert run.returncode != 0, run.explain()
    assert "NotFoundError" in run.stderr, run.explain()
    assert "PARENT_NOT_FOUND" in run.stderr, run.explain()
    assert "'root'" in run.stderr, run.explain()  # the message names the unknown parent
    assert run.stdout == ""

    # Only the root (created before the first child failed) exists; nothing ran.
    tasks = await user_tasks(server_process.address)
    assert len(tasks) == 1, tasks
    [root] = tasks
    assert (root.name, root.parent_id, root.priority) == ("root_task", None, 1)
    assert root.status == statuses.PENDING
    assert not root.has_children
    assert not root.execution_requested


async def test_part5_helper_fixed(server_process: ServerProcess) -> None:
    run = await run_ok("part5_helper_fixed.py", server_process.address)

    [tree] = await trees(server_process.address)
    assert shape(tree) == [[], []]
    root, *children = tree
    assert root.status == statuses.COMPLETED
    assert run.lines[0] == f"Root: {root.id} completed", run.explain()
    assert sorted(run.lines[1:]) == sorted(
        f"{c.id}: completed {c.inputs['resource']}" for c in children
    ), run.explain()
    assert {c.inputs["resource"] for c in children} == {"cpu", "memory"}
    for child in children:
        assert child.parent_id == root.id
        assert_info_task(child)


# --------------------------------------------------------------------------- Part 6


PATTERN_LINE = re.compile(r"^(pattern[123]) (root|task) (\S+): (\w+)$")


async def test_part6_patterns(server_process: ServerProcess) -> None:
    run = await run_ok("part6_patterns.py", server_process.address)

    printed: dict[str, dict[str, str]] = {}
    roots: dict[str, str] = {}
    for line in run.lines:
        match = PATTERN_LINE.match(line)
        assert match, f"unexpected line {line!r}\n{run.explain()}"
        pattern, kind, task_id, status = match.groups()
        assert status == statuses.COMPLETED, run.explain()
        if kind == "root":
            roots[pattern] = task_id
        else:
            printed.setdefault(pattern, {})[task_id] = status

    server_trees = {tree[0].id: tree for tree in await trees(server_process.address)}
    assert set(server_trees) == set(roots.values())
    expected_shapes = {
        "pattern1": [[], [], []],  # flat
        "pattern2": [[[[]]]],  # deep: root > child > grandchild > great-grandchild
        "pattern3": [[[], []], [[], []], [[], []]],  # balanced
    }
    for pattern, want in expected_shapes.items():
        tree = server_trees[roots[pattern]]
        assert shape(tree) == want, pattern
        # The script printed every task of the tree (from the local nodes), all completed.
        assert set(printed[pattern]) == {task.id for task in tree}, pattern
        assert tree[0].status == statuses.COMPLETED
        for task in tree[1:]:
            assert_info_task(task)


# --------------------------------------------------------------------------- Part 7


TRAVERSE_LINE = re.compile(r"^( *)- (\w+) \(status: (\w+)\)$")


async def test_part7_operations(server_process: ServerProcess) -> None:
    run = await run_ok("part7_operations.py", server_process.address)
    await check_part7_operations(run, server_process.address)


async def check_part7_operations(run: ScriptRun, address: str) -> None:
    """What part7_operations.py printed, and what the server at `address` then holds."""
    assert run.lines[:3] == [
        "Tree execution completed!",
        "Overall progress: 100.0%",
        "Overall status: completed",
    ], run.explain()

    traversal = run.lines[3:]
    assert len(traversal) == 5, run.explain()
    parsed = []
    for line in traversal:
        match = TRAVERSE_LINE.match(line)
        assert match, f"unexpected line {line!r}\n{run.explain()}"
        parsed.append((len(match[1]), match[2], match[3]))

    # Depth-first: root, child1, grandchild1, child2, grandchild2; indentation grows per level.
    indents = [indent for indent, _, _ in parsed]
    unit = indents[1]
    assert unit > 0, run.explain()
    assert indents == [0, unit, 2 * unit, unit, 2 * unit], run.explain()
    assert [name for _, name, _ in parsed] == ["root_task"] + ["system_info_executor"] * 4
    assert {status for _, _, status in parsed} == {statuses.COMPLETED}

    [tree] = await trees(address)
    assert shape(tree) == [[[]], [[]]]
    assert all(task.status == statuses.COMPLETED for task in tree)


# --------------------------------------------------------------------------- Part 9


async def test_mistake1_forgotten_child_still_runs(server_process: ServerProcess) -> None:
    """The server's tree is the truth: a child never add_child'ed still executes, and the
    refresh after distribute_task_tree adds it to the local root node."""
    run = await run_ok("mistake1_forgotten_child.py", server_process.address)

    assert run.lines[0] == "Children before execution: 0", run.explain()
    assert "Child task status: completed" in run.lines, run.explain()
    assert "Child added to root.children by refresh: True" in run.lines, run.explain()
    assert "Overall status: completed" in run.lines, run.explain()

    [tree] = await trees(server_process.address)
    root, child = tree
    assert child.parent_id == root.id
    assert root.status == statuses.COMPLETED
    assert_info_task(child)


async def test_mistake3_orphan_is_rejected(server_process: ServerProcess) -> None:
    run = await run_ok("mistake3_orphan.py", server_process.address)

    assert run.lines[0] == "Orphan rejected: NotFoundError reason=PARENT_NOT_FOUND", run.explain()
    assert "nonexistent_id" in run.lines[1], run.explain()

    # Nothing was written for the orphan; the "right" parent and child exist.
    tasks = await user_tasks(server_process.address)
    assert len(tasks) == 2, tasks
    parent, child = tasks
    assert child.parent_id == parent.id
    assert f"Child: {child.id} parent={parent.id}" in run.lines, run.explain()
    assert all(task.status == statuses.PENDING for task in tasks)


# --------------------------------------------------------------------------- SDK behaviour


ADDRESS_PROBE = """
import asyncio
from taskgrove import TaskManager, create_session

async def main():
    db = create_session()
    print(db.address)
    repository = TaskManager(db).task_repository
    task = await repository.create_task(name="root_task", user_id="tutorial_user")
    print(task.id)
    await db.close()

asyncio.run(main())
"""


async def test_taskgrove_address_is_honoured(
    server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = server_process.address

    # In a fresh process: create_session() connects to $TASKGROVE_ADDRESS.
    run = await run_python(["-c", ADDRESS_PROBE], address)
    assert run.returncode == 0, run.explain()
    printed_address, task_id = run.lines
    assert printed_address == address
    assert [task.id for task in await user_tasks(address)] == [task_id]

    # The environment, else the default; an explicit argument wins over the environment.
    monkeypatch.setenv("TASKGROVE_ADDRESS", address)
    assert create_session().address == address
    assert create_session("127.0.0.1:1").address == "127.0.0.1:1"
    monkeypatch.delenv("TASKGROVE_ADDRESS")
    assert create_session().address == "127.0.0.1:50051"

    # A tutorial script pointed at a loopback port where nothing listens fails (UNAVAILABLE)
    # instead of reaching some other server; our server gets nothing.
    dead = f"127.0.0.1:{free_loopback_port()}"
    run = await run_script("part2_simple_tree.py", dead)
    assert run.returncode != 0, run.explain()
    assert "UnavailableError" in run.stderr, run.explain()
    assert len(await user_tasks(address)) == 1


async def test_failing_executor_shows_failed_through_calculate_status(
    server_process: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGROVE_ADDRESS", server_process.address)
    db = create_session()
    try:
        async with asyncio.timeout(RPC_TIMEOUT):
            task_manager = TaskManager(db)
            repository = task_manager.task_repository
            root_task = await repository.create_task(name="root_task", user_id=USER, priority=1)
            ok_task = await repository.create_task(
                name="system_info_executor",
                user_id=USER,
                parent_id=root_task.id,
                inputs={"resource": "cpu"},
            )
            failing_task = await repository.create_task(
                name="boom",
                executor="sleep_executor",
                user_id=USER,
                parent_id=root_task.id,
                inputs={"fail": True, "message": "boom on purpose"},
            )
            root = TaskTreeNode(root_task)
            ok_node = root.add_child(TaskTreeNode(ok_task))
            failing_node = root.add_child(TaskTreeNode(failing_task))

            assert root.calculate_status() == statuses.PENDING
            await task_manager.distribute_task_tree(root)

            assert root.calculate_status() == statuses.FAILED
            assert ok_node.calculate_status() == statuses.COMPLETED
            assert failing_node.calculate_status() == statuses.FAILED
            # Mean of executables: completed = 1.0, the failed task reported nothing (0.0).
            assert root.calculate_progress() == pytest.approx(0.5)
            assert failing_node.task.status == statuses.FAILED
            assert failing_node.task.error is not None
            assert failing_node.task.error.reason == "EXECUTOR_ERROR"
            assert failing_node.task.error.message == "boom on purpose"

            server_root = await repository.get_task_by_id(root_task.id)
            assert server_root.status == statuses.FAILED
            assert server_root.progress == pytest.approx(0.5)
    finally:
        await db.close()
