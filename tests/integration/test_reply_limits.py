"""Replies stay within the message limit (issue "Write-path failures"), on a real server
configured with a small `max_message_bytes` so that a tree of a thousand tasks exceeds it.

A reply that would not fit is refused before anything is written (RESPONSE_TOO_LARGE) or
answered in a smaller form (the BASIC view, shorter pages, more snapshot messages); gRPC's
own "message larger than max" (RESOURCE_EXHAUSTED) must never be what a client sees.
Watch streams: heartbeats have a floor, and the number of streams a limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from support.events import Follower
from support.status_details import describe, error_info
from support.trees import sleep_tree
from support.waiting import WAIT_S, until, wait_finished
from taskgrove import AsyncClient, InvalidArgumentError, Snapshot, task_message
from taskgrove._watch import watch_request
from taskgrove.domain import reasons
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.executors import (
    ExecutionContext,
    Executor,
    ExecutorError,
    ExecutorRegistry,
)

if TYPE_CHECKING:
    from conftest import ServerFactory

SMALL = 256 * 1024
"""The server's `max_message_bytes`."""
RESULT_LIMIT = 64 * 1024
"""The server's `max_result_bytes`."""
TASKS = 700
"""Children of a large tree: its FULL view does not fit in SMALL, its BASIC view does
(BASIC tasks weigh about 210 bytes, 245 in a copy; see `large_tree`)."""
FULL = task_service_pb2.TASK_VIEW_FULL
BASIC = task_service_pb2.TASK_VIEW_BASIC


@dataclass
class Small:
    server: TaskgroveServer
    client: AsyncClient

    @property
    def stub(self) -> Any:
        return self.client.stub


def big_result_registry() -> ExecutorRegistry:
    """`big`: returns {"blob": "x" * inputs.size}; `fails_big`: fails with a long message
    and 15 KB of details (the most an event of the task carries)."""

    async def big(context: ExecutionContext) -> Any:
        return {"blob": "x" * int(context.inputs["size"])}

    async def fails_big(context: ExecutionContext) -> Any:
        raise ExecutorError("m" * 2000, details={"blob": "y" * 15_000})

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="big", run=big))
    registry.register(Executor(id="fails_big", run=fails_big))
    return registry


@pytest.fixture
async def small(make_server: ServerFactory) -> Small:
    server = await make_server(
        registry=big_result_registry(),
        max_message_bytes=SMALL,
        max_result_bytes=RESULT_LIMIT,
    )
    return Small(server, make_server.client(server))


async def refused(
    call: Awaitable[Any], reason: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    got, _, _ = error_info(caught.value)
    assert (caught.value.code(), got) == (code, reason), describe(caught.value)
    return caught.value


def large_tree(tasks: int = TASKS, pad: int = 100) -> list[dict[str, Any]]:
    """A group root with `tasks` sleep_executor children, each with `pad` bytes of params
    (in the FULL view only)."""
    return [{**spec, "params": {"pad": "p" * pad}} for spec in sleep_tree(tasks)]


def large_tree_request(
    view: int = task_service_pb2.TASK_VIEW_UNSPECIFIED,
    request_id: str = "",
    tasks: int = TASKS,
    pad: int = 100,
) -> task_service_pb2.CreateTaskTreeRequest:
    request = task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_message(**spec) for spec in large_tree(tasks, pad)],
        view=view,
        request_id=request_id,
    )
    assert request.ByteSize() < SMALL * 3 // 4  # the request itself is within the limit
    return request


async def all_tasks(client: AsyncClient, **filters: Any) -> list[task_service_pb2.Task]:
    """Every stored task, page by page (raw, so each page's size can be checked)."""
    tasks: list[Any] = []
    token = ""
    for _ in range(10_000):
        reply = await client.stub.ListTasks(
            task_service_pb2.ListTasksRequest(page_size=1000, page_token=token, **filters)
        )
        assert reply.ByteSize() <= SMALL
        tasks.extend(reply.tasks)
        token = reply.next_page_token
        if not token:
            return tasks
    raise AssertionError("ListTasks never ended")


async def streams_ended(server: TaskgroveServer) -> None:
    """Until the server has let go of every watch stream the test cancelled (so that none
    is still ending when the server stops)."""
    await until(lambda: server.hub.subscriber_count == 0)


def is_basic(task: Any) -> bool:
    return not task.HasField("create_time") and not task.HasField("retry_backoff")


# --------------------------------------------------------------------------- CreateTaskTree


async def test_full_view_that_would_not_fit_is_refused_before_writing(small: Small) -> None:
    error = await refused(small.stub.CreateTaskTree(large_tree_request(FULL)), "RESPONSE_TOO_LARGE")
    _, metadata, _ = error_info(error)
    assert int(metadata["estimated_bytes"]) > int(metadata["max_bytes"])
    assert int(metadata["max_bytes"]) < SMALL
    # The SDK asks for the FULL view unless told `basic`.
    with pytest.raises(InvalidArgumentError) as caught:
        await small.client.create_task_tree(large_tree())
    assert caught.value.reason == reasons.RESPONSE_TOO_LARGE
    assert await all_tasks(small.client) == []


async def test_refusal_with_a_request_id_is_repeated_and_leaves_it_unused(small: Small) -> None:
    request = large_tree_request(FULL, request_id="large-tree")
    first = await refused(small.stub.CreateTaskTree(request), "RESPONSE_TOO_LARGE")
    again = await refused(small.stub.CreateTaskTree(request), "RESPONSE_TOO_LARGE")
    assert (again.details(), error_info(again)) == (first.details(), error_info(first))
    assert await all_tasks(small.client) == []
    # Nothing was recorded under the request_id: the same tree asking for BASIC is new.
    created = await small.stub.CreateTaskTree(large_tree_request(BASIC, request_id="other"))
    repeated = await small.stub.CreateTaskTree(large_tree_request(BASIC, request_id="other"))
    assert repeated == created
    assert len(await all_tasks(small.client)) == TASKS + 1


async def test_unspecified_view_is_answered_basic_when_full_would_not_fit(small: Small) -> None:
    reply = await small.stub.CreateTaskTree(large_tree_request())
    assert len(reply.tasks) == TASKS + 1
    assert all(is_basic(task) for task in reply.tasks)
    assert set(reply.task_ids.values()) == {task.id for task in reply.tasks}
    stored = await all_tasks(small.client)
    assert {task.id for task in stored} == {task.id for task in reply.tasks}
    # A tree that fits is answered FULL.
    fits = await small.stub.CreateTaskTree(large_tree_request(tasks=3))
    assert len(fits.tasks) == 4 and not any(is_basic(task) for task in fits.tasks)


@pytest.mark.parametrize("view", [BASIC, task_service_pb2.TASK_VIEW_UNSPECIFIED])
async def test_a_tree_whose_basic_view_would_not_fit_is_refused_before_writing(
    small: Small, view: int
) -> None:
    # Stored ids are longer than local ids: the request fits, its BASIC answer would not.
    request = large_tree_request(view, request_id="too-large", tasks=2 * TASKS, pad=0)
    for _ in range(2):
        error = await refused(small.stub.CreateTaskTree(request), "RESPONSE_TOO_LARGE")
        assert "BASIC" in (error.details() or "")
    assert await all_tasks(small.client) == []
    with pytest.raises(InvalidArgumentError) as caught:
        await small.client.create_task_tree(large_tree(2 * TASKS, pad=0), basic=True)
    assert caught.value.reason == reasons.RESPONSE_TOO_LARGE
    assert await all_tasks(small.client) == []
    # In parts, it fits: a tree, then a subtree under its root.
    first = await small.client.create_task_tree(large_tree(), basic=True)
    second = await small.client.create_task_tree(
        [{**large_tree()[0], "parent_id": first["root"].id}, *large_tree()[1:]], basic=True
    )
    assert second["root"].parent_id == first["root"].id
    assert len(await all_tasks(small.client)) == 2 * (TASKS + 1)


# --------------------------------------------------------------------------- CopyTaskTree


async def test_copy_full_view_refused_unspecified_answered_basic(small: Small) -> None:
    created = await small.client.create_task_tree(large_tree(), basic=True)
    root = created["root"].id
    request = task_service_pb2.CopyTaskTreeRequest(id=root, view=FULL, request_id="copy")
    for _ in range(2):
        await refused(small.stub.CopyTaskTree(request), "RESPONSE_TOO_LARGE")
    assert len(await all_tasks(small.client)) == TASKS + 1
    reply = await small.stub.CopyTaskTree(task_service_pb2.CopyTaskTreeRequest(id=root))
    assert len(reply.tasks) == TASKS + 1
    assert all(is_basic(task) for task in reply.tasks)
    assert set(reply.task_ids) == {task.id for task in created.values()}
    assert len(await all_tasks(small.client)) == 2 * (TASKS + 1)


async def test_a_copy_whose_basic_view_would_not_fit_is_refused(small: Small) -> None:
    # Made in parts (each fits), copied whole (does not).
    first = await small.client.create_task_tree(large_tree(), basic=True)
    root = first["root"].id
    await small.client.create_task_tree(
        [{**large_tree()[0], "parent_id": root}, *large_tree()[1:]], basic=True
    )
    for view in (BASIC, task_service_pb2.TASK_VIEW_UNSPECIFIED, FULL):
        request = task_service_pb2.CopyTaskTreeRequest(id=root, view=view)
        await refused(small.stub.CopyTaskTree(request), "RESPONSE_TOO_LARGE")
    assert len(await all_tasks(small.client)) == 2 * (TASKS + 1)


# --------------------------------------------------------------------------- reads


async def test_get_task_tree_too_large_is_refused_with_a_reason(small: Small) -> None:
    created = await small.client.create_task_tree(large_tree(), basic=True)
    root = created["root"].id
    for depth in (0, 1):
        request = task_service_pb2.GetTaskTreeRequest(id=root, max_depth=depth)
        error = await refused(small.stub.GetTaskTree(request), "RESPONSE_TOO_LARGE")
        assert "ListTasks" in (error.details() or "")
    # What the refusal suggests works: the children page by page.
    children = await all_tasks(small.client, parent_id=root)
    assert {task.id for task in children} == {
        task.id for local, task in created.items() if local != "root"
    }
    # Fewer levels that fit are answered.
    one = await small.client.get_task_tree(created["c0"].id)
    assert [task.id for task in one] == [created["c0"].id]


async def test_a_result_over_the_limit_is_stored_truncated(small: Small) -> None:
    task = await small.client.create_task(name="big", inputs={"size": 4 * RESULT_LIMIT})
    await small.client.execute_task(task.id)
    finished = await wait_finished(small.client, task.id)
    assert finished.status == "completed"
    text = json.dumps({"blob": "x" * 4 * RESULT_LIMIT})
    assert finished.result["truncated"] is True
    assert finished.result["size_bytes"] == len(text)
    preview = finished.result["preview"]
    assert 0 < len(preview) <= 4096 and text.startswith(preview)
    assert [t.id for t in await small.client.get_task_tree(task.id)] == [task.id]
    assert [t.id for t in await all_tasks(small.client)] == [task.id]


async def run_large_results(client: AsyncClient, count: int) -> dict[str, str]:
    """A tree of `count` tasks with results just under the limit, run to the end; local
    id -> task id."""
    created = await client.create_task_tree(
        [{"id": "root", "name": "root"}]
        + [
            {"id": f"b{i}", "name": "big", "parent_id": "root", "inputs": {"size": 60_000}}
            for i in range(count)
        ]
    )
    await client.execute_task(created["root"].id)
    assert (await wait_finished(client, created["root"].id)).status == "completed"
    return {local: task.id for local, task in created.items()}


async def test_list_pages_end_early_on_large_tasks(small: Small) -> None:
    ids = await run_large_results(small.client, 8)
    pages: list[list[str]] = []
    token = ""
    for _ in range(100):
        reply = await small.stub.ListTasks(
            task_service_pb2.ListTasksRequest(page_size=100, page_token=token)
        )
        assert reply.ByteSize() <= SMALL
        pages.append([task.id for task in reply.tasks])
        assert all(
            len(task.result.struct_value.fields["blob"].string_value) == 60_000
            for task in reply.tasks
            if task.id != ids["root"]
        )
        token = reply.next_page_token
        if not token:
            break
    assert not token
    assert len(pages) >= 3  # 8 x 60 KB cannot come in one or two pages
    seen = [task_id for page in pages for task_id in page]
    assert sorted(seen) == sorted(ids.values())  # each once
    # The whole tree would not fit in one reply.
    request = task_service_pb2.GetTaskTreeRequest(id=ids["root"])
    await refused(small.stub.GetTaskTree(request), "RESPONSE_TOO_LARGE")


async def test_watch_snapshot_of_large_tasks_arrives_in_several_messages(small: Small) -> None:
    ids = await run_large_results(small.client, 8)
    call = small.stub.WatchEvents(watch_request(root_id=ids["root"], include_snapshot=True))
    messages = []
    try:
        async with asyncio.timeout(WAIT_S):
            async for message in call:
                assert message.ByteSize() <= SMALL
                messages.append(message)
                if message.snapshot_complete:
                    break
    finally:
        call.cancel()
    assert len(messages) >= 3
    assert [m.snapshot_complete for m in messages] == [False] * (len(messages) - 1) + [True]
    assert sorted(t.id for m in messages for t in m.snapshot) == sorted(ids.values())
    # The SDK assembles it.
    stream = small.client.watch(root_id=ids["root"], include_snapshot=True, max_reconnects=0)
    try:
        async with asyncio.timeout(WAIT_S):
            first = await anext(stream)
    finally:
        await stream.aclose()
    await streams_ended(small.server)
    assert isinstance(first, Snapshot)
    assert sorted(t.id for t in first.tasks) == sorted(ids.values())
    assert all(len(t.result["blob"]) == 60_000 for t in first.tasks if t.id != ids["root"])


async def test_watch_events_of_large_errors_arrive_in_several_messages(small: Small) -> None:
    count = 40  # about 17 KB an event: their replay does not fit in one message
    created = await small.client.create_task_tree(
        [{"id": "root", "name": "root"}]
        + [{"id": f"f{i}", "name": "fails_big", "parent_id": "root"} for i in range(count)]
    )
    root = created["root"].id
    await small.client.execute_task(root)
    assert (await wait_finished(small.client, root)).status == "failed"
    call = small.stub.WatchEvents(watch_request(root_id=root, heartbeat_interval=0.5))
    messages = []
    try:
        async with asyncio.timeout(WAIT_S):
            async for message in call:
                if message.heartbeat:
                    break  # the replay is over
                assert message.ByteSize() <= SMALL
                messages.append(message)
    finally:
        call.cancel()
    await streams_ended(small.server)
    failures = [
        event
        for message in messages
        for event in message.events
        if event.status == task_pb2.TASK_STATUS_FAILED and event.task_id != root
    ]
    assert len(failures) == count
    assert all(len(e.error.details.fields["blob"].string_value) == 15_000 for e in failures)
    assert len(messages) >= 2


# --------------------------------------------------------------------------- watch streams


async def test_heartbeats_have_a_floor(server: TaskgroveServer, client: AsyncClient) -> None:
    follower = Follower(client.stub, watch_request(heartbeat_interval=0.01))
    try:
        await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
        before = len(follower.messages)
        await asyncio.sleep(1.5)
        beats = [m for m in follower.messages[before:] if m.heartbeat]
        # 10 ms asked for, at least 0.5 s between heartbeats served: a few, not ~150.
        assert len(beats) <= 4, len(beats)
        assert follower.error is None, describe(follower.error)
    finally:
        await follower.close()
    await streams_ended(server)


async def test_watchers_beyond_the_limit_are_refused(make_server: ServerFactory) -> None:
    server = await make_server(max_watchers=3)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(3))
    root = created["root"].id

    def snapshot_done(follower: Follower) -> bool:
        return any(m.snapshot_complete for m in follower.messages)

    followers = [
        Follower(client.stub, watch_request(root_id=root, include_snapshot=True)) for _ in range(3)
    ]
    try:
        for follower in followers:
            await follower.wait_for(snapshot_done)
        fourth = client.stub.WatchEvents(watch_request(root_id=root))
        try:
            await refused(
                fourth.read(), reasons.TOO_MANY_WATCHERS, grpc.StatusCode.RESOURCE_EXHAUSTED
            )
        finally:
            fourth.cancel()
        # The others keep working: they see the tree run.
        await client.execute_task(root)
        await wait_finished(client, root)

        def saw_root_complete(follower: Follower) -> bool:
            return any(
                e.task_id == root and e.status == task_pb2.TASK_STATUS_COMPLETED
                for e in follower.events
            )

        for follower in followers:
            await follower.wait_for(saw_root_complete)
            assert follower.error is None
        # A stream that ends frees its place (ended streams unsubscribe asynchronously).
        await followers.pop().close()
        admitted: Follower | None = None
        for _ in range(100):
            candidate = Follower(client.stub, watch_request(root_id=root, include_snapshot=True))
            await until(lambda c=candidate: snapshot_done(c) or c.ended.is_set())
            if snapshot_done(candidate):
                admitted = candidate
                break
            assert candidate.error is not None
            assert error_info(candidate.error)[0] == reasons.TOO_MANY_WATCHERS
            await candidate.close()
            await asyncio.sleep(0.05)
        assert admitted is not None
        followers.append(admitted)
    finally:
        for follower in followers:
            await follower.close()
    await streams_ended(server)
