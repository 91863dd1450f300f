"""The TypeScript client (client/typescript) against real servers: its `node --test`
suite, and its watch example resuming across a server restart with every event once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import clients
from support.credentials import TOKENS, tokens_toml
from taskgrove_server.testing import ServerProcess, sqlite_url

PACKAGE = clients.TYPESCRIPT
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def built() -> Path:
    return clients.typescript_dist()


def _env(address: str, **extra: str) -> dict[str, str]:
    return clients.environment(TASKGROVE_ADDRESS=address, **extra)


def test_node_suite_against_real_servers(built: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml())
    plain = ServerProcess(sqlite_url(tmp_path / "plain.db"))
    auth = ServerProcess(
        sqlite_url(tmp_path / "auth.db"), extra_env={"TASKGROVE_TOKENS_FILE": str(tokens)}
    )
    with plain, auth:
        env = _env(
            plain.address,
            TASKGROVE_TEST_AUTH_ADDRESS=auth.address,
            TASKGROVE_TEST_TOKEN=TOKENS["alice"][0],
        )
        result = subprocess.run(
            ["node", "--test", str(built / "test")],
            cwd=PACKAGE,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    assert "# skipped 0" in result.stdout, result.stdout


def _create_tree(built: Path, address: str, tree: dict[str, object]) -> dict[str, object]:
    result = subprocess.run(
        ["node", str(built / "examples" / "create-tree.js")],
        input=json.dumps(tree),
        env=_env(address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_watch_example_resumes_across_a_restart(built: Path, tmp_path: Path) -> None:
    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as server:
        port = server.port
        tasks = [
            {"id": "root", "name": "root"},
            {
                "id": "a",
                "name": "a",
                "executor": "sleep_executor",
                "inputs": {"seconds": 0.1},
                "parent_id": "root",
            },
            {
                "id": "b",
                "name": "b",
                "executor": "sleep_executor",
                "inputs": {"seconds": 0.1},
                "parent_id": "root",
                "dependencies": [{"id": "a", "required": True}],
            },
        ]
        created = _create_tree(built, server.address, {"tasks": tasks, "execute": False})
        root_id = str(created["root_id"])
        ids = created["task_ids"]
        assert isinstance(ids, dict) and set(ids) == {"root", "a", "b"}
        watcher = subprocess.Popen(
            ["node", str(built / "examples" / "watch.js"), "--root-id", root_id],
            env=_env(server.address),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            before = [json.loads(watcher.stdout.readline()) for _ in range(3)]  # the CREATED
            assert [e["type"] for e in before] == ["CREATED"] * 3
            server.stop()
            time.sleep(0.5)  # the watcher is now reconnecting
            server.start(port=port)
            # More work after the restart: the watcher must see it, after what it saw.
            subprocess.run(
                [sys.executable, "-c", _EXECUTE, server.address, root_id],
                check=True,
                timeout=60,
            )
            out, err = watcher.communicate(timeout=60)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(timeout=10)
        assert watcher.returncode == 0, err
        events = before + [json.loads(line) for line in out.splitlines()]
    sequences = [e["sequence"] for e in events]
    assert sequences == sorted(set(sequences)), sequences  # in order, none twice
    assert all(isinstance(s, int) for s in sequences)
    assert events[-1]["task_id"] == root_id and events[-1]["status"] == "COMPLETED"
    completed = {e["task_id"] for e in events if e["status"] == "COMPLETED"}
    assert completed == set(ids.values())
    # No gap: what a fresh watch from 0 sees (on the same database) is exactly this.
    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as again:
        replay = subprocess.run(
            ["node", str(built / "examples" / "watch.js"), "--root-id", root_id],
            env=_env(again.address),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert replay.returncode == 0, replay.stderr
    assert [json.loads(line) for line in replay.stdout.splitlines()] == events


_EXECUTE = """
import sys
import grpc
from taskgrove.v1 import task_service_pb2, task_service_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    stub = task_service_pb2_grpc.TaskServiceStub(channel)
    stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=sys.argv[2]), timeout=30)
"""
