"""A snapshot larger than one message arrives in chunks, then the events follow."""

from __future__ import annotations

import asyncio

from taskgrove import AsyncClient, Snapshot, TaskEvent
from taskgrove.v1 import task_service_pb2
from taskgrove_server.api.watch import SNAPSHOT_CHUNK

TASKS = SNAPSHOT_CHUNK + 300  # two messages


def big_tree() -> list[dict[str, object]]:
    return [{"id": "root", "name": "root", "user_id": "chunks"}] + [
        {"id": f"c{i}", "name": "sleep_executor", "parent_id": "root"} for i in range(TASKS)
    ]


async def test_raw_stream_chunks_the_snapshot_and_marks_its_end(client: AsyncClient) -> None:
    created = await client.create_task_tree(big_tree(), basic=True)
    root = created["root"].id
    request = task_service_pb2.WatchEventsRequest(root_id=root, include_snapshot=True)
    call = client.stub.WatchEvents(request)
    sizes, completes, sequences = [], [], []
    try:
        async with asyncio.timeout(30):
            async for response in call:
                sizes.append(len(response.snapshot))
                completes.append(response.snapshot_complete)
                sequences.append(response.sequence)
                if response.snapshot_complete:
                    break
    finally:
        call.cancel()
    assert sizes == [SNAPSHOT_CHUNK, TASKS + 1 - SNAPSHOT_CHUNK]
    assert completes == [False, True]
    assert len(set(sequences)) == 1  # one snapshot, one sequence


async def test_sdk_assembles_the_snapshot_then_follows_events(client: AsyncClient) -> None:
    created = await client.create_task_tree(big_tree(), basic=True)
    root = created["root"].id
    stream = client.watch(root_id=root, include_snapshot=True)
    try:
        async with asyncio.timeout(60):
            first = await anext(stream)
            assert isinstance(first, Snapshot)
            assert len(first.tasks) == TASKS + 1
            assert {task.id for task in first.tasks} == {task.id for task in created.values()}
            await client.execute_task(root)
            seen = []
            async for item in stream:
                assert isinstance(item, TaskEvent)
                assert item.sequence > first.sequence
                seen.append(item)
                if item.task_id == root and item.status == "completed":
                    break
    finally:
        await stream.aclose()
    completed = {e.task_id for e in seen if e.type == "status_changed" and e.status == "completed"}
    assert completed == {task.id for task in created.values()}
