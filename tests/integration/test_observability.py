"""Metrics (/metrics over HTTP), structured logs and traces, through the real server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from taskgrove import AsyncClient, NotFoundError, statuses
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ConfigError, ServerConfig
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry
from taskgrove_server.observability.logs import JsonFormatter, configure_logging
from taskgrove_server.testing import ServerProcess, sqlite_url

GET_TASK = "/taskgrove.v1.TaskService/GetTask"
CREATE_TREE = "/taskgrove.v1.TaskService/CreateTaskTree"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:PORT/metrics by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def boom(context: ExecutionContext) -> Any:
    raise ValueError("the executor has a bug")


def registry_with_bug() -> ExecutorRegistry:
    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="buggy_executor", run=boom))
    return registry


TREE = [
    {"id": "root", "name": "root_task", "user_id": "u"},
    {"id": "a", "name": "sleep_executor", "parent_id": "root", "inputs": {"seconds": 0}},
    {"id": "b", "name": "sleep_executor", "parent_id": "root", "inputs": {"seconds": 0}},
    {"id": "bad", "name": "buggy_executor", "parent_id": "root"},
]


async def test_metrics_endpoint_counts_a_tree(make_server: Any) -> None:
    server: TaskgroveServer = await make_server(
        registry=registry_with_bug(), metrics_address="127.0.0.1:0"
    )
    assert server.observability.metrics_port > 0
    before = await asyncio.to_thread(scrape, server.observability.metrics_port)
    assert value(before, "taskgrove_running_attempts") == 0
    assert value(before, "taskgrove_tasks_finished_total", status="completed") == 0

    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        tasks = await client.create_task_tree(TREE, execute=True)
        async with asyncio.timeout(10):
            root = await client.wait(tasks["root"].id)
        assert root.status == statuses.FAILED
        with pytest.raises(NotFoundError):
            await client.get_task("0190c3a4-0000-7000-8000-000000000000")
        async with asyncio.timeout(10):  # a call is counted once its handler has returned
            while True:
                samples = await asyncio.to_thread(scrape, server.observability.metrics_port)
                if value(
                    samples, "taskgrove_grpc_requests_total", method=GET_TASK, code="NOT_FOUND"
                ):
                    break

    completed = {"executor": "sleep_executor", "outcome": "completed"}
    assert value(samples, "taskgrove_attempt_duration_seconds_count", **completed) == 2
    failed = {"executor": "buggy_executor", "outcome": "failed"}
    assert value(samples, "taskgrove_attempt_duration_seconds_count", **failed) == 1
    assert value(samples, "taskgrove_attempt_duration_seconds_bucket", le="+Inf", **failed) == 1
    assert value(samples, "taskgrove_dispatch_latency_seconds_count") == 3
    assert value(samples, "taskgrove_tasks_finished_total", status="completed") == 2
    assert value(samples, "taskgrove_tasks_finished_total", status="failed") == 1
    # created x4, status changes: 3 claims, 3 ends, root pending -> in_progress -> failed...
    assert value(samples, "taskgrove_events_published_total") >= 10
    assert value(samples, "taskgrove_writer_batch_writes_count") >= 2
    assert value(samples, "taskgrove_writer_commit_seconds_count") == value(
        samples, "taskgrove_writer_batch_writes_count"
    )
    assert value(samples, "taskgrove_grpc_requests_total", method=CREATE_TREE, code="OK") == 1
    assert value(samples, "taskgrove_grpc_requests_total", method=GET_TASK, code="OK") >= 1
    assert value(samples, "taskgrove_grpc_requests_total", method=GET_TASK, code="NOT_FOUND") == 1
    assert (
        value(
            samples,
            "taskgrove_grpc_request_duration_seconds_count",
            method=GET_TASK,
            code="NOT_FOUND",
        )
        == 1
    )
    for gauge in (
        "taskgrove_ready_queue_depth",
        "taskgrove_running_attempts",
        "taskgrove_watchers",
        "taskgrove_workers_connected",
        "taskgrove_worker_free_slots",
    ):
        assert (gauge, frozenset()) in samples
    # The finished tree was let go: nothing in memory runs.
    assert value(samples, "taskgrove_tasks", status="in_progress") == 0
    assert ("taskgrove_tasks", frozenset({("status", "pending")})) in samples


async def test_tasks_gauge_and_watchers_while_a_tree_runs(make_server: Any) -> None:
    server: TaskgroveServer = await make_server(metrics_address="127.0.0.1:0")
    port = server.observability.metrics_port
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        tasks = await client.create_task_tree(
            [
                {"id": "root", "name": "root_task", "user_id": "u"},
                {
                    "id": "slow",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 30},
                },
                {
                    "id": "next",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 0},
                    "dependencies": [{"id": "slow"}],
                },
            ],
            execute=True,
        )
        watching = asyncio.create_task(_watch(client, tasks["root"].root_id))
        async with asyncio.timeout(10):
            while True:
                samples = await asyncio.to_thread(scrape, port)
                if (
                    value(samples, "taskgrove_running_attempts") == 1
                    and value(samples, "taskgrove_watchers") == 1
                ):
                    break
                await asyncio.sleep(0.02)
        assert value(samples, "taskgrove_tasks", status="in_progress") == 1
        assert value(samples, "taskgrove_tasks", status="pending") == 1
        await client.cancel_task(tasks["root"].id)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        async with asyncio.timeout(10):
            while True:
                samples = await asyncio.to_thread(scrape, port)
                if value(samples, "taskgrove_running_attempts") == 0:
                    break
                await asyncio.sleep(0.02)
    cancelled = {"executor": "sleep_executor", "outcome": "cancelled"}
    assert value(samples, "taskgrove_attempt_duration_seconds_count", **cancelled) == 1
    assert value(samples, "taskgrove_tasks_finished_total", status="cancelled") == 2


async def _watch(client: AsyncClient, root_id: str) -> None:
    async for _ in client.watch(root_id=root_id):
        pass


async def test_metrics_are_off_by_default(server: TaskgroveServer) -> None:
    assert server.observability.metrics is None
    assert server.observability.probe is None
    assert server.observability.metrics_port == 0


async def test_a_bad_metrics_address_is_refused_before_anything_opens(tmp_path: Path) -> None:
    config = ServerConfig(
        address="127.0.0.1:0",
        db_url=sqlite_url(tmp_path / "x.db"),
        metrics_address="127.0.0.1:http",
    )
    with pytest.raises(ConfigError, match="metrics address"):
        TaskgroveServer(config)
    assert not (tmp_path / "x.db").exists()


def test_configure_logging_refuses_unknown_format_and_level() -> None:
    with pytest.raises(ConfigError, match="log format"):
        configure_logging("yaml", "INFO")
    with pytest.raises(ConfigError, match="TASKGROVE_LOG_LEVEL=LOUD"):
        configure_logging("json", "LOUD")


# ---------------------------------------------------------------------------- logs


async def test_failed_attempt_and_rpc_error_are_logged_with_fields(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server: TaskgroveServer = await make_server(registry=registry_with_bug())
    caplog.set_level(logging.INFO)
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        tasks = await client.create_task_tree(TREE, execute=True)
        async with asyncio.timeout(10):
            await client.wait(tasks["root"].id)
        with pytest.raises(NotFoundError):
            await client.get_task("0190c3a4-0000-7000-8000-000000000000")
    [attempt] = [r for r in caplog.records if getattr(r, "task_id", None) == tasks["bad"].id]
    assert attempt.levelno == logging.WARNING
    line = json.loads(JsonFormatter().format(attempt))
    assert line["root_id"] == tasks["root"].id
    assert line["executor"] == "buggy_executor"
    assert line["attempt"] == 1
    assert line["reason"] == "EXECUTOR_ERROR"
    assert "the executor has a bug" in line["error_message"]
    assert "ValueError: the executor has a bug" in line["traceback"]
    assert 'raise ValueError("the executor has a bug")' in line["traceback"]
    async with asyncio.timeout(10):  # the status reaches the client before the line
        while True:
            rpcs = [r for r in caplog.records if getattr(r, "rpc_method", None) == GET_TASK]
            if rpcs:
                break
            await asyncio.sleep(0.01)
    [rpc] = rpcs
    assert rpc.levelno == logging.INFO
    assert rpc.code == "NOT_FOUND"  # type: ignore[attr-defined]
    assert rpc.reason == "TASK_NOT_FOUND"  # type: ignore[attr-defined]
    assert rpc.peer  # type: ignore[attr-defined]


def test_json_logs_of_a_server_process(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    metrics_port = free_port()
    env = {
        "TASKGROVE_LOG_FORMAT": "json",
        "TASKGROVE_LOG_LEVEL": "INFO",
        "TASKGROVE_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
    }
    with ServerProcess(sqlite_url(tmp_path / "tg.db"), extra_env=env, log_path=log_path) as server:
        failed_id = asyncio.run(_run_failing_tree(server.address))
        for _ in range(500):  # a call is counted once its handler has returned
            samples = scrape(metrics_port)
            if value(samples, "taskgrove_grpc_requests_total", method=GET_TASK, code="NOT_FOUND"):
                break
            time.sleep(0.02)
    failed = {"executor": "sleep_executor", "outcome": "failed"}
    assert value(samples, "taskgrove_attempt_duration_seconds_count", **failed) == 1
    assert value(samples, "taskgrove_grpc_requests_total", method=GET_TASK, code="NOT_FOUND") == 1
    lines = []
    for raw in log_path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    assert lines, log_path.read_text()
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    [attempt] = [line for line in lines if line.get("task_id") == failed_id]
    assert attempt["level"] == "WARNING"
    assert attempt["executor"] == "sleep_executor"
    assert attempt["attempt"] == 1
    assert attempt["reason"] == "EXECUTOR_ERROR"
    assert attempt["error_message"] == "asked to fail"
    assert attempt["root_id"]
    [rpc] = [line for line in lines if line.get("rpc_method") == GET_TASK]
    assert rpc["code"] == "NOT_FOUND"
    assert rpc["reason"] == "TASK_NOT_FOUND"
    assert any("metrics on http://127.0.0.1:" in line["message"] for line in lines)


async def _run_failing_tree(address: str) -> str:
    async with AsyncClient(address) as client:
        tasks = await client.create_task_tree(
            [
                {"id": "root", "name": "root_task", "user_id": "u"},
                {
                    "id": "x",
                    "name": "sleep_executor",
                    "parent_id": "root",
                    "inputs": {"seconds": 0, "fail": True, "message": "asked to fail"},
                },
            ],
            execute=True,
        )
        async with asyncio.timeout(20):
            await client.wait(tasks["root"].id)
        with pytest.raises(NotFoundError):
            await client.get_task("0190c3a4-0000-7000-8000-000000000000")
        return tasks["x"].id


def test_a_busy_metrics_port_stops_the_server_at_start(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ServerProcess(
            sqlite_url(tmp_path / "tg.db"),
            extra_env={"TASKGROVE_METRICS_ADDRESS": f"127.0.0.1:{port}"},
        )
        with pytest.raises(RuntimeError) as failure:
            server.start()
    assert f"error: cannot serve metrics on 127.0.0.1:{port}: " in str(failure.value)
    assert "address already in use" in str(failure.value).lower()
    assert not (tmp_path / "tg.db").exists()  # refused before the database was made
