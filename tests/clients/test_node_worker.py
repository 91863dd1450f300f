"""The Node.js worker (client/typescript `Worker`, run as examples/node-worker/worker.js)
next to a Python SDK worker process and the server's own executors, on one real server:
one tree whose results cross languages (Python -> Node -> Python), a cancel and a timeout
reaching the Node attempt's AbortSignal, a stopping Node worker giving its attempt back, and
an outcome finished while the network was down delivered after the reconnect.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from support import clients
from taskgrove import AsyncClient

from tests.conftest import ServerFactory
from tests.workers.waiting import until

EXAMPLE = clients.ROOT / "examples" / "node-worker" / "worker.js"
LEASE_S = 1.5
"""Short, so that the 2 s Node attempt below lives only by the worker's heartbeats."""

PYTHON_WORKER = """
from taskgrove import Worker, WorkerContext

worker = Worker("python-side")

@worker.executor("py.emit", input_schema={"type": "object", "required": ["value"]})
async def emit(ctx: WorkerContext) -> dict:
    value = ctx.inputs["value"]
    return {"value": value + 1 if isinstance(value, int) else f"py:{value}", "by": "python"}

@worker.executor("py.collect")
async def collect(ctx: WorkerContext) -> dict:
    results = ctx.dependency_results.values()
    return {"values": sorted(str(r["value"]) for r in results), "by": [r["by"] for r in results]}
"""


class Process:
    """A worker process; its stderr goes to a file the test reads."""

    def __init__(self, command: list[str], directory: Path, name: str, **env: str) -> None:
        self.stderr_path = directory / f"{name}.log"
        with self.stderr_path.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=directory, env=clients.environment(**env), stderr=log
            )
        self.pid = self.process.pid

    @property
    def log(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        """SIGTERM (the worker leaves politely), SIGKILL if it does not exit."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def built() -> Path:
    return clients.typescript_dist()


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    started: list[Process] = []
    yield started
    # In threads: the in-process server must go on serving the workers' goodbyes.
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in started))


class Proxy:
    """A TCP relay to the server whose connections the test can cut (and refuse for a
    while): a network failure between a worker and a server that stays up."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.refusing = False
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def node_worker(port: int, directory: Path, *, slots: int, name: str = "node-worker") -> Process:
    address = f"127.0.0.1:{port}"
    command = ["node", str(EXAMPLE), "--address", address, "--slots", str(slots), "--name", name]
    return Process(command, directory, name)


def python_worker(port: int, directory: Path) -> Process:
    (directory / "polyglot_worker.py").write_text(PYTHON_WORKER)
    taskgrove = str(Path(sys.executable).with_name("taskgrove"))
    command = [taskgrove, "worker", "polyglot_worker:worker", "--address", f"127.0.0.1:{port}"]
    return Process(command, directory, "python-worker", PYTHONPATH=str(directory))


async def served_by(client: AsyncClient, executor: str, count: int = 1) -> bool:
    found = [e for e in await client.list_executors() if e.id == executor]
    return bool(found) and len(found[0].workers) == count


async def test_one_tree_across_python_node_and_built_in_executors(
    built: Path, make_server: ServerFactory, processes: list[Process], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=LEASE_S)
    client = make_server.client(server)
    node = node_worker(server.port, tmp_path, slots=4)
    processes.append(node)
    processes.append(python_worker(server.port, tmp_path))
    await until(lambda: served_by(client, "node.concat"), seconds=30)
    await until(lambda: served_by(client, "py.collect"), seconds=30)
    (concat,) = [e for e in await client.list_executors() if e.id == "node.concat"]
    assert concat.remote and concat.workers[0].labels == {"language": "node", "pid": str(node.pid)}

    def task(key: str, executor: str, inputs: dict[str, object], *deps: str) -> dict[str, object]:
        return {
            "id": key,
            "name": key,
            "parent_id": "root",
            "executor": executor,
            "inputs": inputs,
            "dependencies": [{"id": dep, "required": True} for dep in deps],
        }

    created = await client.create_task_tree(
        [
            {"id": "root", "name": "polyglot"},
            task("py_word", "py.emit", {"value": "hello"}),
            task("py_number", "py.emit", {"value": 6}),
            task("builtin_word", "sleep_executor", {"seconds": 0.05, "result": "builtin"}),
            task("node_join", "node.concat", {"parts": ["node"], "separator": "+"},
                 "py_word", "builtin_word"),
            task("node_square", "node.square", {}, "py_number"),
            task("node_sleep", "node.sleep", {"seconds": 2}),
            task("py_collect", "py.collect", {}, "node_join", "node_square"),
            task("memory", "system_info_executor", {"resource": "memory"}, "node_square"),
        ],
        execute=True,
    )  # fmt: skip
    async with asyncio.timeout(60):
        root = await client.wait(created["root"].id)
    tasks = {t.name: t for t in await client.get_task_tree(root.id)}
    assert {name: t.status for name, t in tasks.items()} == dict.fromkeys(tasks, "completed")
    # One attempt each: the 2 s Node attempt outlived the 1.5 s lease on heartbeats alone.
    assert {t.attempt for name, t in tasks.items() if name != "polyglot"} == {1}
    results = {name: t.result for name, t in tasks.items()}
    assert results["py_word"] == {"value": "py:hello", "by": "python"}
    assert results["py_number"] == {"value": 7, "by": "python"}
    assert results["node_join"] == {"value": "node+builtin+py:hello", "parts": 3, "by": "node"}
    assert results["node_square"] == {"value": 49, "x": 7, "by": "node"}
    assert results["node_sleep"] == {"slept_seconds": 2, "by": "node"}
    collected = results["py_collect"]
    assert isinstance(collected, dict)
    assert collected["values"] == ["49", "node+builtin+py:hello"]
    assert collected["by"] == ["node", "node"]
    memory = results["memory"]
    assert isinstance(memory, dict) and memory["total_bytes"] > 0
    assert "refused" not in node.log  # every outcome was accepted


async def test_cancel_and_timeout_abort_the_node_attempt_s_signal(
    built: Path, make_server: ServerFactory, processes: list[Process], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=LEASE_S)
    client = make_server.client(server)
    node = node_worker(server.port, tmp_path, slots=1)
    processes.append(node)
    await until(lambda: served_by(client, "node.sleep"), seconds=30)

    doomed = await client.create_task(name="doomed", executor="node.sleep", inputs={"seconds": 60})
    await client.execute_task(doomed.id)
    await until(lambda: f"started {doomed.id}" in node.log, seconds=20)
    await client.cancel_task(doomed.id)
    async with asyncio.timeout(20):
        cancelled = await client.wait(doomed.id)
    assert cancelled.status == "cancelled"
    await until(lambda: f"aborted {doomed.id}: " in node.log, seconds=10)
    assert "(CANCELLED)" in node.log

    slow = await client.create_task(
        name="slow",
        executor="node.sleep",
        inputs={"seconds": 30},
        timeout=timedelta(seconds=1),
    )
    await client.execute_task(slow.id)  # runs only once the cancelled attempt freed the slot
    async with asyncio.timeout(20):
        timed_out = await client.wait(slow.id)
    assert timed_out.status == "failed" and timed_out.error is not None
    assert timed_out.error.reason == "TIMEOUT"
    await until(lambda: f"aborted {slow.id}: " in node.log, seconds=10)
    assert "(TIMEOUT)" in node.log

    square = await client.create_task(name="square", executor="node.square", inputs={"x": 12})
    await client.execute_task(square.id)
    async with asyncio.timeout(20):
        done = await client.wait(square.id)
    assert (done.status, done.result) == ("completed", {"value": 144, "x": 12, "by": "node"})
    assert "refused" not in node.log


async def test_a_stopping_node_worker_gives_its_attempt_back(
    built: Path, make_server: ServerFactory, processes: list[Process], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=LEASE_S)
    client = make_server.client(server)
    leaving = node_worker(server.port, tmp_path, slots=1, name="leaving")
    processes.append(leaving)
    await until(lambda: served_by(client, "node.sleep"), seconds=30)
    task = await client.create_task(
        name="handed-over",
        executor="node.sleep",
        inputs={"seconds": 1},
        max_attempts=1,  # a run given back does not count: it runs again as attempt 1
    )
    await client.execute_task(task.id)
    await until(lambda: f"started {task.id} attempt 1" in leaving.log, seconds=20)
    staying = node_worker(server.port, tmp_path, slots=1, name="staying")
    processes.append(staying)
    await until(lambda: served_by(client, "node.sleep", 2), seconds=30)
    await asyncio.to_thread(leaving.stop)  # SIGTERM: it aborts the attempt and reports it
    assert leaving.process.returncode == 0, leaving.log
    async with asyncio.timeout(30):
        done = await client.wait(task.id)
    assert (done.status, done.attempt) == ("completed", 1), done
    assert f"aborted {task.id}: " in leaving.log
    assert f"started {task.id} attempt 1" in staying.log


async def test_an_outcome_finished_while_disconnected_is_delivered_after_the_reconnect(
    built: Path, make_server: ServerFactory, processes: list[Process], tmp_path: Path
) -> None:
    server = await make_server(worker_lease_seconds=8)
    client = make_server.client(server)
    async with Proxy(server.port) as proxy:
        node = node_worker(proxy.port, tmp_path, slots=1)
        processes.append(node)
        await until(lambda: served_by(client, "node.sleep"), seconds=30)
        task = await client.create_task(name="t", executor="node.sleep", inputs={"seconds": 1})
        await client.execute_task(task.id)
        await until(lambda: f"started {task.id}" in node.log, seconds=20)
        proxy.refusing = True
        proxy.cut()
        await until(lambda: "connection lost" in node.log, seconds=10)
        await asyncio.sleep(1.5)  # the attempt ends meanwhile: its outcome waits
        assert (await client.get_task(task.id)).status == "in_progress"
        proxy.refusing = False
        async with asyncio.timeout(30):
            done = await client.wait(task.id)
    assert (done.status, done.attempt, done.result) == (
        "completed",
        1,
        {"slept_seconds": 1, "by": "node"},
    )
    assert node.log.count("registered") == 2 and "refused" not in node.log
