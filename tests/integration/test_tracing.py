"""OpenTelemetry: a span per call and per attempt, the attempts linked to the call that
executed their tree (the SDK's in-memory exporter)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from taskgrove import AsyncClient, statuses
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig
from taskgrove_server.observability.tracing import tracing_requested
from taskgrove_server.testing import sqlite_url

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

CREATE_TREE = "/taskgrove.v1.TaskService/CreateTaskTree"
EXECUTE = "/taskgrove.v1.TaskService/ExecuteTask"


async def test_attempt_spans_link_to_the_call_that_executed_the_tree(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = ServerConfig(address="127.0.0.1:0", db_url=sqlite_url(tmp_path / "tg.db"))
    server = TaskgroveServer(config, tracer_provider=provider)
    await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            tasks = await client.create_task_tree(
                [
                    {"id": "root", "name": "root_task", "user_id": "u"},
                    {
                        "id": "a",
                        "name": "sleep_executor",
                        "parent_id": "root",
                        "inputs": {"seconds": 0},
                    },
                    {
                        "id": "bad",
                        "name": "sleep_executor",
                        "parent_id": "root",
                        "inputs": {"seconds": 0, "fail": True},
                    },
                ],
                execute=True,
            )
            later = await client.create_task_tree(
                [{"id": "t", "name": "sleep_executor", "user_id": "u", "inputs": {"seconds": 0}}]
            )
            await client.execute_task(later["t"].id)
            async with asyncio.timeout(10):
                root = await client.wait(tasks["root"].id)
                await client.wait(later["t"].id)
        assert root.status == statuses.FAILED
    finally:
        await server.stop(grace=1)

    spans = exporter.get_finished_spans()
    creates = [s for s in spans if s.name == CREATE_TREE]
    assert len(creates) == 2
    create = creates[0]  # the one that executed the tree (spans end in order)
    [execute] = [s for s in spans if s.name == EXECUTE]
    attempts = {
        s.attributes["taskgrove.task_id"]: s
        for s in spans
        if s.name == "attempt sleep_executor" and s.attributes is not None
    }
    assert set(attempts) == {tasks["a"].id, tasks["bad"].id, later["t"].id}
    ok, bad = attempts[tasks["a"].id], attempts[tasks["bad"].id]
    assert ok.attributes is not None and bad.attributes is not None
    assert ok.attributes["taskgrove.outcome"] == "completed"
    assert ok.attributes["taskgrove.root_id"] == tasks["root"].id
    assert ok.attributes["taskgrove.executor"] == "sleep_executor"
    assert ok.attributes["taskgrove.attempt"] == 1
    assert bad.attributes["taskgrove.outcome"] == "failed"
    assert bad.attributes["taskgrove.error.reason"] == "EXECUTOR_ERROR"
    assert not bad.status.is_ok
    for span in (ok, bad):
        [link] = span.links
        assert link.context.span_id == create.context.span_id
        assert link.context.trace_id == create.context.trace_id
    [link] = attempts[later["t"].id].links
    assert link.context.span_id == execute.context.span_id


def test_tracing_is_off_unless_configured() -> None:
    config = ServerConfig()
    assert not tracing_requested(config, {})
    assert tracing_requested(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert not tracing_requested(config, {"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_requested(config, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_requested(ServerConfig(otlp_endpoint="http://127.0.0.1:4317"), {})
    assert tracing_requested(ServerConfig(tracing=True), {})
