"""The limits of issue "Security", point 5, that no other file proves (docs/limits.md
lists every limit and its test): tree depth, dependencies per task, the message size,
and hostile requests that must not stop the server or other callers. Each refusal has
its code, reason and field, and changes nothing."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from taskgrove import AsyncClient, InvalidArgumentError, TaskgroveError
from taskgrove.domain import reasons
from taskgrove_server.service import limits

if TYPE_CHECKING:
    from conftest import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
DEPTH = limits.MAX_TREE_DEPTH


def chain(levels: int, prefix: str = "l", parent_id: str | None = None) -> list[dict[str, Any]]:
    """`levels` tasks, each the parent of the next (the first under `parent_id`)."""
    tasks: list[dict[str, Any]] = []
    for level in range(levels):
        above = f"{prefix}{level - 1}" if level else parent_id
        tasks.append({"id": f"{prefix}{level}", "name": f"level {level + 1}", "parent_id": above})
    return tasks


async def stored_count(client: AsyncClient) -> int:
    return len([task async for task in client.list_tasks()])


async def refused(call: Any) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as raised:
        await call
    return raised.value


async def test_trees_may_be_as_deep_as_the_limit_and_no_deeper(client: AsyncClient) -> None:
    too_deep = await refused(client.create_task_tree(chain(DEPTH + 1), basic=True))
    assert too_deep.reason == reasons.TREE_TOO_DEEP
    assert [v.field for v in too_deep.field_violations] == [f"tasks[{DEPTH}].parent_id"]
    assert await stored_count(client) == 0

    made = await client.create_task_tree(chain(DEPTH), basic=True)
    deepest, above = made[f"l{DEPTH - 1}"], made[f"l{DEPTH - 2}"]
    # Under the deepest task nothing more; under the one above it, one level only.
    under = await refused(client.create_task(name="deeper", parent_id=deepest.id))
    assert under.reason == reasons.TREE_TOO_DEEP
    assert [v.field for v in under.field_violations] == ["task.parent_id"]
    attached = await refused(client.create_task_tree(chain(2, "a", parent_id=above.id), basic=True))
    assert [v.field for v in attached.field_violations] == ["tasks[1].parent_id"]
    assert await stored_count(client) == DEPTH

    sibling = await client.create_task(name="last level", parent_id=above.id)
    assert sibling.parent_id == above.id
    # The deepest chain reads back whole.
    assert len(await client.get_task_tree(made["l0"].id)) == DEPTH + 1


async def test_a_task_may_have_a_thousand_dependencies_and_no_more(client: AsyncClient) -> None:
    most = limits.MAX_DEPENDENCIES
    leaves = [{"id": f"d{i}", "name": f"dep {i}", "parent_id": "top"} for i in range(most + 1)]

    def tree(count: int) -> list[dict[str, Any]]:
        waiting = {
            "id": "waits",
            "name": "waits",
            "parent_id": "top",
            "executor": "sleep_executor",
            "dependencies": [f"d{i}" for i in range(count)],
        }
        return [{"id": "top", "name": "top"}, *leaves, waiting]

    too_many = await refused(client.create_task_tree(tree(most + 1), basic=True))
    assert too_many.reason == reasons.TOO_MANY_DEPENDENCIES
    assert [v.field for v in too_many.field_violations] == [f"tasks[{most + 2}].dependencies"]
    assert await stored_count(client) == 0
    made = await client.create_task_tree(tree(most))
    assert len(made["waits"].dependencies) == most


BOUNDS = [
    # (field, the most accepted, one more refused, reason)
    ("name", "n" * limits.MAX_NAME_LENGTH, "n" * (limits.MAX_NAME_LENGTH + 1), "NAME_TOO_LONG"),
    ("user_id", "u" * limits.MAX_USER_ID_LENGTH, "u" * 256, "INVALID_USER_ID"),
    ("executor", None, "e" * (limits.MAX_EXECUTOR_LENGTH + 1), "INVALID_STRING"),
    ("max_attempts", limits.MAX_ATTEMPTS, limits.MAX_ATTEMPTS + 1, "INVALID_RETRY_POLICY"),
]


@pytest.mark.parametrize(("field", "most", "over", "reason"), BOUNDS, ids=[b[0] for b in BOUNDS])
async def test_each_field_bound_accepts_its_limit_and_refuses_one_more(
    client: AsyncClient, field: str, most: Any, over: Any, reason: str
) -> None:
    task = {"name": "bounded", "executor": "sleep_executor"}
    error = await refused(client.create_task(**{**task, field: over}))
    assert error.reason == reason
    # (an over-long executor is also an unknown one: a second violation, same field)
    assert {v.field for v in error.field_violations} == {f"task.{field}"}
    assert await stored_count(client) == 0
    if most is not None:  # (an executor name at the limit would be an unknown executor)
        made = await client.create_task(**{**task, field: most})
        assert getattr(await client.get_task(made.id), field) == most


async def test_a_request_id_over_the_limit_is_refused(client: AsyncClient) -> None:
    most = "r" * limits.MAX_REQUEST_ID_LENGTH
    error = await refused(client.create_task(name="once", request_id=most + "r"))
    assert error.reason == reasons.INVALID_REQUEST_ID
    assert await stored_count(client) == 0
    first = await client.create_task(name="once", request_id=most)
    assert (await client.create_task(name="once", request_id=most)).id == first.id


async def test_a_message_over_the_limit_is_refused_and_the_server_goes_on(
    make_server: ServerFactory,
) -> None:
    instance = await make_server(max_message_bytes=64 * 1024)
    client = make_server.client(instance)
    with pytest.raises(TaskgroveError) as raised:
        await client.create_task(name="big", inputs={"blob": "x" * 100_000})
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await stored_count(client) == 0
    small = await client.create_task(name="small", inputs={"blob": "x" * 1000})
    assert (await client.get_task(small.id)).inputs == {"blob": "x" * 1000}


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


async def test_hostile_requests_leave_the_server_serving_others(
    make_server: ServerFactory,
) -> None:
    """While one caller sends the largest, deepest and most nested requests the server
    refuses (or just accepts), another's calls and health checks are all answered."""
    instance = await make_server(max_message_bytes=8 * 1024 * 1024)
    hostile, bystander = make_server.client(instance), make_server.client(instance)
    mine = await bystander.create_task(name="mine", executor="sleep_executor")

    async def attack() -> list[str]:
        outcomes = []
        attempts: list[Any] = [
            lambda: hostile.create_task_tree(chain(DEPTH + 1, "h"), basic=True),
            lambda: hostile.create_task(name="n" * 100_000),
            lambda: hostile.create_task(name="deep", inputs={"v": nested(40)}),
            lambda: hostile.create_task(name="wide", inputs={"v": "x" * (2 * 1024 * 1024)}),
            lambda: hostile.create_task(name="huge", inputs={"v": "x" * (9 * 1024 * 1024)}),
            lambda: hostile.create_task_tree(chain(DEPTH, "ok"), basic=True),
        ]
        for attempt in attempts:
            try:
                await attempt()
                outcomes.append("OK")
            except TaskgroveError as error:
                outcomes.append(error.reason or error.code.name)
        return outcomes

    async def bystanding(stop: asyncio.Event) -> int:
        answered = 0
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{instance.port}")
        health = health_pb2_grpc.HealthStub(channel)
        try:
            for _ in range(10_000):  # bounded; ends when the attack does
                assert (await bystander.get_task(mine.id)).name == "mine"
                check = await health.Check(health_pb2.HealthCheckRequest(), timeout=30)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
                answered += 1
                if stop.is_set():
                    break
        finally:
            await channel.close()
        return answered

    stop = asyncio.Event()
    watcher = asyncio.ensure_future(bystanding(stop))
    try:
        outcomes = await attack()
    finally:
        stop.set()
    answered = await watcher
    assert outcomes == [
        reasons.TREE_TOO_DEEP,
        reasons.NAME_TOO_LONG,
        reasons.INVALID_JSON_VALUE,
        reasons.VALUE_TOO_LARGE,
        "RESOURCE_EXHAUSTED",
        "OK",
    ]
    assert answered >= 1
    assert await stored_count(bystander) == DEPTH + 1


def test_the_limits_document_names_every_bound() -> None:
    """Every constant of service/limits.py and every limit setting of ServerConfig is in
    docs/limits.md, with a test that exists."""
    text = (ROOT / "docs" / "limits.md").read_text()
    constants = [name for name in vars(limits) if name.startswith("MAX_")]
    settings = ["max_tree_size", "max_message_bytes", "max_result_bytes", "max_watchers"]
    settings += ["max_watchers_per_caller", "min_heartbeat_seconds", "watcher_buffer_events"]
    for name in [*constants, *settings]:
        assert f"`{name}`" in text, name
    for path, test in re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text):
        assert f"def {test}(" in (ROOT / path).read_text(), f"{path}::{test}"
