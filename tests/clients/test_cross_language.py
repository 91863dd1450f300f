"""One tree through three clients: created from TypeScript, executed from Python, watched
from Go, TypeScript and Python at once. Every client must see the same events (sequence,
task, type, status) in the same order, exactly those the server committed.

The TypeScript and Go sides are their example programs (`create-tree`, `watch`), run as
the processes a user would run, against a real `taskgrove serve` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from support.clients import environment, go_program, typescript_dist
from support.database import committed
from taskgrove import AsyncClient, statuses
from taskgrove_server.testing import ServerProcess, sqlite_url

WAIT_S = 60.0
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
TREE = {
    "tasks": [
        {"id": "root", "name": "cross-language tree"},
        {"id": "fetch", "name": "fetch", "parent_id": "root", "executor": "sleep_executor",
         "inputs": {"seconds": 0.05}, "priority": 1},
        {"id": "parse", "name": "parse", "parent_id": "root", "executor": "sleep_executor",
         "inputs": {"seconds": 0.05}, "dependencies": [{"id": "fetch", "required": True}]},
        {"id": "memory", "name": "memory", "parent_id": "root",
         "executor": "system_info_executor", "inputs": {"resource": "memory"}},
    ],
    "execute": False,
}  # fmt: skip

Line = tuple[int, str, str, str]


def as_line(event: dict[str, Any]) -> Line:
    return (event["sequence"], event["task_id"], event["type"], event["status"])


async def python_watch(client: AsyncClient, root_id: str) -> list[Line]:
    seen: list[Line] = []
    async for event in client.watch(root_id=root_id):
        assert not isinstance(event, Exception)
        line = (
            event.sequence,
            event.task_id,
            event.type.upper(),  # type: ignore[union-attr]
            event.status.upper(),  # type: ignore[union-attr]
        )
        seen.append(line)
        if line[1] == root_id and line[3] in TERMINAL:
            return seen
    raise AssertionError("the Python watch ended before the tree finished")


async def lines_of(process: asyncio.subprocess.Process, name: str) -> list[Line]:
    try:
        async with asyncio.timeout(WAIT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"{name} did not exit in {WAIT_S:.0f} s: {err.decode()}") from None
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{err.decode()}"
    return [as_line(json.loads(line)) for line in out.decode().splitlines() if line.strip()]


async def start(*command: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
def programs() -> tuple[Path, Path]:
    """The TypeScript examples (dist/) and the Go watch program, built."""
    return typescript_dist() / "examples", go_program("examples/watch")


async def test_a_tree_created_in_typescript_executed_in_python_is_watched_alike_everywhere(
    tmp_path: Path, programs: tuple[Path, Path]
) -> None:
    examples, go_watch = programs
    db = tmp_path / "tg.db"
    with ServerProcess(sqlite_url(db)) as server:
        env = environment(TASKGROVE_ADDRESS=server.address)
        creator = await start("node", str(examples / "create-tree.js"), env=env)
        async with asyncio.timeout(WAIT_S):
            out, err = await creator.communicate(json.dumps(TREE).encode())
        assert creator.returncode == 0, err.decode()
        answer = json.loads(out)
        root_id = answer["root_id"]
        assert set(answer["task_ids"]) == {task["id"] for task in TREE["tasks"]}  # type: ignore[index]

        watchers = {
            "go": await start(str(go_watch), "--root-id", root_id, env=env),
            "typescript": await start(
                "node", str(examples / "watch.js"), "--root-id", root_id, env=env
            ),
        }
        try:
            async with AsyncClient(server.address) as client:
                watching = asyncio.ensure_future(python_watch(client, root_id))
                await client.execute_task(root_id)
                async with asyncio.timeout(WAIT_S):
                    python = await watching
                    final = await client.wait(root_id)
                assert final.status == statuses.COMPLETED
                stored = await client.get_task_tree(root_id)
            seen = {name: await lines_of(process, name) for name, process in watchers.items()}
        finally:
            for process in watchers.values():
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    assert {task.name for task in stored} == {task["name"] for task in TREE["tasks"]}  # type: ignore[index]
    assert {task.id for task in stored} == set(answer["task_ids"].values())
    assert next(t for t in stored if t.name == "fetch").inputs == {"seconds": 0.05}
    # The server's own record: every committed event of the tree, in commit order.
    truth = [
        (row["sequence"], row["task_id"], row["type"].upper(), row["status"].upper())
        for row in committed(sqlite_url(db), root_id=root_id)
    ]
    assert truth and truth[-1][1:] == (root_id, "STATUS_CHANGED", "COMPLETED")
    assert python == truth
    assert seen["go"] == truth
    assert seen["typescript"] == truth
    # The tree ran as its dependencies say: fetch completed before parse started.
    done = {line[1]: index for index, line in enumerate(truth) if line[3] == "COMPLETED"}
    started = {line[1]: index for index, line in enumerate(truth) if line[3] == "IN_PROGRESS"}
    fetch, parse = answer["task_ids"]["fetch"], answer["task_ids"]["parse"]
    assert done[fetch] < started[parse]
