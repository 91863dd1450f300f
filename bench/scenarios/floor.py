"""The floor under a create's latency, layer by layer, on this machine: a bare grpc.aio
round trip (bench/echo_server.py, a process of its own), then calls of one fresh taskgrove
server that add one thing each: the health check (the server's interceptors, no work),
GetTask of a leaf (one point read), CreateTask under the root (a read and a commit),
CreateTask chained to the previous one (and a dependency; the GetTask row is measured
last, on one of the leaves the creates made). Each: `FLOOR_CALLS` sequential calls of
this process's grpc.aio client after `FLOOR_WARMUP`, p50/p90 and the server's CPU per
call. The same code ran create p50 at 0.9 ms in one run and 1.5-2.5 ms in another two
hours later on this VM: the echo row says which kind of machine a table comes from."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
from connection import open_channel
from echo_server import PATH
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import ERROR, OK, Backend, num, percentile, started_server
from processes import service, wait_until
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from trees import LEAF_EXECUTOR, LEAF_INPUTS

FLOOR_CALLS = 2_000
FLOOR_WARMUP = 200
_ECHO = Path(__file__).resolve().parent.parent / "echo_server.py"


@dataclass(slots=True)
class FloorRow:
    layer: str
    calls: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    server_cpu_us_per_call: float | None = None
    """The server process's user+system CPU time."""


Call = Callable[[], Awaitable[Any]]


async def _timed(row: FloorRow, call: Call, server_pid: int, calls: int) -> None:
    for _ in range(FLOOR_WARMUP):
        await call()
    server = psutil.Process(server_pid)
    before = sum(server.cpu_times()[:2])
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    row.calls = calls
    row.server_cpu_us_per_call = (sum(server.cpu_times()[:2]) - before) / calls * 1e6
    row.p50_ms, row.p90_ms = percentile(samples, 50), percentile(samples, 90)


def _echo_port(log_path: Path) -> int | None:
    """The port the echo server printed first, once it has."""
    first = log_path.read_text().split("\n", 1)[0] if log_path.exists() else ""
    return int(first) if first.strip().isdigit() else None


async def _echo_row(row: FloorRow, port: int, pid: int, calls: int, limit_s: float) -> None:
    async with open_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(PATH)
        payload = b"x" * 200
        async with asyncio.timeout(limit_s):
            await _timed(row, lambda: echo(payload), pid, calls)


def leaf_creator(stub: task_service_pb2_grpc.TaskServiceStub, root_id: str, chained: bool) -> Call:
    """A CreateTask of a leaf under `root_id` (its owner's); `chained`: depending on the one
    created before."""
    previous = ""

    async def create() -> None:
        nonlocal previous
        task = task_pb2.Task(name=LEAF_EXECUTOR, parent_id=root_id)  # the root's owner
        task.inputs.update(LEAF_INPUTS)
        if chained and previous:
            task.dependencies.add(id=previous)
        previous = (await stub.CreateTask(task_service_pb2.CreateTaskRequest(task=task))).id

    return create


async def _server_rows(
    address: str, pid: int, rows: dict[str, FloorRow], calls: int, limit_s: float
) -> None:
    async with open_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        async with asyncio.timeout(limit_s):
            root = await stub.CreateTask(
                task_service_pb2.CreateTaskRequest(task=task_pb2.Task(name="root", user_id="b"))
            )
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest()
            await _timed(rows["health"], lambda: health.Check(check), pid, calls)
            await _timed(rows["flat"], leaf_creator(stub, root.id, chained=False), pid, calls)
            await _timed(rows["chain"], leaf_creator(stub, root.id, chained=True), pid, calls)
            # A leaf: a group's GetTask reads its subtree's progress too.
            leaf = await stub.ListTasks(
                task_service_pb2.ListTasksRequest(parent_id=root.id, page_size=1)
            )
            get = task_service_pb2.GetTaskRequest(id=leaf.tasks[0].id)
            await _timed(rows["get"], lambda: stub.GetTask(get), pid, calls)


LAYERS = {
    "echo": "bare grpc.aio echo (own process)",
    "health": "health Check (the server, no work)",
    "get": "GetTask of a leaf (one point read)",
    "flat": "CreateTask under the root",
    "chain": "CreateTask chained to the last",
}


def run_floor(backend: Backend, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    rows = {key: FloorRow(text) for key, text in LAYERS.items()}
    result: dict[str, Any] = {"backend": backend.name, "outcome": OK, "detail": ""}
    log_path = workdir / "echo-server.log"
    try:
        with service([sys.executable, str(_ECHO)], os.environ, log_path) as echo:
            wait_until(echo, lambda: _echo_port(log_path) is not None, "echo server", log_path)
            port = _echo_port(log_path)
            assert port is not None
            asyncio.run(_echo_row(rows["echo"], port, echo.pid, args.floor_calls, args.timeout))
        with started_server(backend, "floor", workdir, args) as server:
            asyncio.run(
                _server_rows(server.address, server.pid, rows, args.floor_calls, args.timeout)
            )
    except (RuntimeError, TimeoutError, grpc.aio.AioRpcError) as error:
        result.update(outcome=ERROR, detail=f"{type(error).__name__}: {error}")
    result["rows"] = [{"key": key, **asdict(row)} for key, row in rows.items()]
    return result


def format_floor(result: dict[str, Any]) -> str:
    calls = max((row["calls"] for row in result["rows"]), default=0)
    lines = [
        f"{result['backend']:<10} the floor under a create ({calls:,} sequential calls each; "
        f"server CPU per call):",
        f"  {'':<36} {'p50 ms':>7} {'p90 ms':>7} {'CPU us':>7}",
    ]
    for row in result["rows"]:
        lines.append(
            f"  {row['layer']:<36} {num(row['p50_ms'], 2):>7} {num(row['p90_ms'], 2):>7} "
            f"{num(row['server_cpu_us_per_call'], 0):>7}"
        )
    if result["outcome"] != OK:
        lines.append(f"  {result['outcome']}: {result['detail']}")
    return "\n".join(lines)
