"""The Go client (client/go) against real servers: `go vet`, `go test ./taskgrove/...`
(which needs a plain server and a tokens-file server), `go build ./examples/...`, the
quickstart example, and the watch example resuming across a server restart.

Skips when `go` is missing, unless TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1 (then fails).
The build runs in GOPATH mode against Debian's /usr/share/gocode; its cache lives under
build/go-cache so reruns stay fast."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from support import clients
from support.credentials import TOKENS, tokens_toml
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from taskgrove_server.testing import ServerProcess, sqlite_url

GO_CLIENT = clients.GO
TIMEOUT = 240.0

clients.require("go", "Go")


@pytest.fixture(scope="module")
def gopath() -> Path:
    return clients.gopath()


def go_env(**extra: str) -> dict[str, str]:
    return clients.environment(**clients.go_env(), **extra)


def go(gopath: Path, *args: str, **extra: str) -> str:
    result = subprocess.run(
        ["go", *args],
        cwd=gopath / "src" / "taskgrove.dev" / "go",
        env=go_env(**extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"go {' '.join(args)} exited {result.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def binaries(gopath: Path) -> Path:
    out = gopath / "bin"
    out.mkdir(exist_ok=True)
    go(gopath, "build", "-o", f"{out}/", "./examples/...")
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as process:
        yield process


def test_go_vet_and_gofmt(gopath: Path) -> None:
    go(gopath, "vet", "./taskgrove/...", "./examples/...")
    unformatted = subprocess.run(
        ["gofmt", "-l", "taskgrove", "examples"],
        cwd=GO_CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert unformatted == ""


def test_go_tests_against_real_servers(gopath: Path, server: ServerProcess, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml())
    auth_db = sqlite_url(tmp_path / "auth.db")
    with ServerProcess(auth_db, extra_env={"TASKGROVE_TOKENS_FILE": str(tokens)}) as auth:
        output = go(
            gopath,
            "test",
            "-count=1",
            "-v",
            "./taskgrove/...",
            TASKGROVE_ADDRESS=server.address,
            TASKGROVE_TEST_AUTH_ADDRESS=auth.address,
            TASKGROVE_TEST_AUTH_TOKEN=TOKENS["alice"][0],
        )
    assert "--- PASS: TestTokenAuth" in output
    assert "FAIL" not in output


def test_quickstart_example(binaries: Path, server: ServerProcess) -> None:
    result = subprocess.run(
        [str(binaries / "quickstart")],
        env=go_env(TASKGROVE_ADDRESS=server.address),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "root TASK_STATUS_COMPLETED" in result.stdout
    assert "slept_seconds:0.1" in result.stdout


def create_tree(address: str, seconds: float) -> str:
    inputs = struct_pb2.Struct()
    inputs.update({"seconds": seconds})
    with grpc.insecure_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        response = stub.CreateTaskTree(
            task_service_pb2.CreateTaskTreeRequest(
                tasks=[
                    task_pb2.Task(id="r", name="root", executor="sleep_executor", inputs=inputs),
                    task_pb2.Task(
                        id="c", parent_id="r", name="c", executor="sleep_executor", inputs=inputs
                    ),
                ]
            ),
            timeout=10,
        )
    return str(response.task_ids["r"])


def execute(address: str, task_id: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=task_id), timeout=10)


def watch(binaries: Path, address: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(binaries / "watch"), *args],
        env=go_env(TASKGROVE_ADDRESS=address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_lines(process: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def next_line(lines: queue.Queue[str], timeout: float = 30.0) -> dict[str, object]:
    return dict(json.loads(lines.get(timeout=timeout)))


def finish(process: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, str]:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.stderr is not None
    return process.returncode, process.stderr.read()


def test_watch_example_resumes_across_a_server_restart(
    binaries: Path, server: ServerProcess
) -> None:
    root_id = create_tree(server.address, 0.05)
    process = watch(binaries, server.address, "--root-id", root_id)
    lines, reader = read_lines(process)
    try:
        before = [next_line(lines), next_line(lines)]  # the two CREATED events
        assert [e["type"] for e in before] == ["CREATED", "CREATED"]
        port = server.port
        server.stop()
        server.start(port=port)
        execute(server.address, root_id)
        code, stderr = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert code == 0, stderr
    reader.join(timeout=10)  # the process has exited: its stdout is at EOF
    assert not reader.is_alive()
    got = before + [json.loads(lines.get_nowait()) for _ in range(lines.qsize())]

    # The same tree watched again from the start, in one go: the reference.
    again = watch(binaries, server.address, "--root-id", root_id)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    want = [json.loads(line) for line in out.splitlines()]

    assert got == want
    sequences = [e["sequence"] for e in got]
    assert sequences == sorted(set(sequences))
    assert all(isinstance(s, int) for s in sequences)
    assert got[-1] == {
        "sequence": got[-1]["sequence"],
        "task_id": root_id,
        "type": "STATUS_CHANGED",
        "status": "COMPLETED",
    }
    assert len(got) > len(before) + 1


def test_watch_example_after_sequence(binaries: Path, server: ServerProcess) -> None:
    root_id = create_tree(server.address, 0.01)
    execute(server.address, root_id)
    full = watch(binaries, server.address, "--root-id", root_id)
    out, err = full.communicate(timeout=60)
    assert full.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    after = events[1]["sequence"]
    rest = watch(binaries, server.address, "--root-id", root_id, "--after-sequence", str(after))
    out, err = rest.communicate(timeout=60)
    assert rest.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == events[2:]
