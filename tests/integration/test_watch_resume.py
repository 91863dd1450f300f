"""WatchEvents resumed with `after_sequence`, read over the raw generated stub (the SDK's
`watch()` drops events at or below its last sequence, so it would hide duplicates).

A stream started after N delivers exactly the committed events matching its filter whose
sequence is above N: starting at the first of them, in order, each once, nothing missing.
The ground truth is the `task_events` table of the server's database.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from support.database import committed, db_of, stored_tasks
from support.events import Follower as StreamFollower
from support.executors import Gates, gate_task
from support.trees import sleep_tree
from support.waiting import until as wait_until
from support.waiting import wait_finished
from taskgrove import TaskEvent, statuses
from taskgrove._watch import watch_request
from taskgrove.domain import wire
from taskgrove.v1 import event_pb2, task_service_pb2
from taskgrove.v1.task_service_pb2_grpc import TaskServiceStub
from taskgrove_server.app import TaskgroveServer

if TYPE_CHECKING:
    from conftest import ServerFactory

WAIT_S = 20.0

COMPLETED = wire.status_to_proto(statuses.COMPLETED)
Row = tuple[int, str, str, str, int]
"""What identifies an event: (sequence, task_id, type, status, attempt)."""


class Follower(StreamFollower):
    wait_s = WAIT_S
    poll_s = 0.005


async def until(predicate: Any, limit_s: float = WAIT_S) -> None:
    await wait_until(predicate, limit_s, poll_s=0.005)


finish = partial(wait_finished, limit_s=WAIT_S)


@pytest.fixture
async def raw_stubs() -> AsyncIterator[Any]:
    """`await raw_stubs(server)`: a TaskServiceStub on a channel of its own (closed at
    teardown)."""
    channels: list[grpc.aio.Channel] = []

    async def connect(server: TaskgroveServer) -> TaskServiceStub:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        return TaskServiceStub(channel)

    yield connect
    for channel in channels:
        await channel.close()


def row_of(event: event_pb2.TaskEvent) -> Row:
    converted = TaskEvent.from_proto(event)
    return (converted.sequence, converted.task_id, converted.type, converted.status, event.attempt)


def committed_rows(db_url: str, **where: str) -> list[Row]:
    return [
        (row["sequence"], row["task_id"], row["type"], row["status"], row["attempt"])
        for row in committed(db_url, **where)
    ]


def assert_resumed(follower: Follower, expected: Sequence[Row], label: str) -> None:
    """The stream started after `after_sequence` carried exactly the committed events
    (`expected`: every one of its filter) above it, in order, each once."""
    after = follower.request.after_sequence
    want = [row for row in expected if row[0] > after]
    got = [row_of(event) for event in follower.events]
    sequences = [row[0] for row in got]
    duplicates = sorted(s for s, n in Counter(sequences).items() if n > 1)
    assert not duplicates, f"{label}: after {after}, duplicated sequences {duplicates[:10]}"
    early = [s for s in sequences if s <= after]
    assert not early, f"{label}: after {after}, sequences at or below it {early[:10]}"
    missing = sorted({row[0] for row in want} - set(sequences))
    assert not missing, f"{label}: after {after}, {len(missing)} missing: {missing[:10]}"
    assert sequences == sorted(sequences), f"{label}: after {after}, out of order"
    assert got[:1] == want[:1], f"{label}: after {after}, starts at {got[:1]}, not {want[:1]}"
    assert got == want, f"{label}: after {after}, events differ from the committed ones"
    high = after
    for message in follower.messages:
        assert all(event.sequence > high for event in message.events), (label, after)
        assert message.sequence >= high, (label, after)
        high = message.sequence


def inside_a_message(messages: Sequence[task_service_pb2.WatchEventsResponse]) -> int | None:
    """The sequence of an event in the middle of the last message holding several events
    (the next event comes in the same message), or None."""
    for message in reversed(messages):
        if len(message.events) >= 2:
            return int(message.events[len(message.events) // 2 - 1].sequence)
    return None


# ------------------------------------------------------------------ a finished run


async def test_resume_after_committed_sequences_of_a_finished_run(
    make_server: ServerFactory, raw_stubs: Any
) -> None:
    server = await make_server(max_concurrency=4)
    client = make_server.client(server)
    stub = await raw_stubs(server)
    db_url = db_of(server)
    ann = await client.create_task_tree(sleep_tree(30, user_id="ann", dep_every=3))
    ben = await client.create_task_tree(sleep_tree(30, user_id="ben", dep_every=3))
    filters = {
        "root": {"root_id": ann["root"].id},
        "user": {"user_id": "ann"},
        "task": {"task_id": ann["c5"].id},
    }
    # Followers from the start, for where the stream cut the run into messages.
    live = {name: Follower(stub, watch_request(**where)) for name, where in filters.items()}
    try:
        await until(lambda: server.hub.subscriber_count == len(live))
        await asyncio.gather(
            client.execute_task(ann["root"].id), client.execute_task(ben["root"].id)
        )
        await finish(client, ann["root"].id)
        await finish(client, ben["root"].id)
        for name, follower in live.items():
            await follower.reach(committed_rows(db_url, **filters[name])[-1][0])
    finally:
        for follower in live.values():
            await follower.close()

    everything = [row[0] for row in committed_rows(db_url)]
    resumed: list[tuple[str, str, Follower]] = []
    for name, where in filters.items():
        sequences = [row[0] for row in committed_rows(db_url, **where)]
        assert len(sequences) >= 3, (name, sequences)
        # The first message of a follower replays what was created before it subscribed:
        # several events in one message for every filter but the task's.
        middle = inside_a_message(live[name].messages)
        assert middle is not None or name == "task", f"{name}: no message of several events"
        others = [s for s in everything if sequences[0] < s < sequences[-1]]
        foreign = [s for s in others if s not in set(sequences)]
        assert foreign, f"{name}: no event of another filter between its own"
        points = {
            "from the start": 0,
            "after the first": sequences[0],
            "inside a message": middle,
            "another filter's sequence": foreign[len(foreign) // 2],
            "mid-run": sequences[len(sequences) // 2],
            "before the last": sequences[-2],
            "the last": sequences[-1],
            "the newest of all": everything[-1],
        }
        for label, after in points.items():
            if after is not None:
                request = watch_request(after_sequence=after, heartbeat_interval=0.05, **where)
                resumed.append((name, f"{name} filter, {label}", Follower(stub, request)))
    try:
        # Replay first, then live: the first heartbeat comes once the stream is idle.
        for _, _, follower in resumed:
            await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
    finally:
        for _, _, follower in resumed:
            await follower.close()
    for name, label, follower in resumed:
        assert follower.error is None, (label, follower.error)
        assert_resumed(follower, committed_rows(db_url, **filters[name]), label)


# ------------------------------------------------------------------ a live run


async def test_resume_in_the_middle_of_a_live_run(
    make_server: ServerFactory, raw_stubs: Any
) -> None:
    # Sleepers commit all the time while streams resume; gated tasks hold the run open
    # until every stream has started, so each one also receives events committed after it
    # started (the replay and the live feed meet while the writer commits).
    gates = Gates(limit_s=WAIT_S)
    server = await make_server(registry=gates.registry(), max_concurrency=4)
    client = make_server.client(server)
    stub = await raw_stubs(server)
    db_url = db_of(server)
    specs = sleep_tree(150, user_id="live", seconds=0.005, dep_every=3)
    specs += [gate_task("hold", "end"), gate_task("after hold", "end", deps=["hold"])]
    created = await client.create_task_tree(specs)
    root = created["root"].id
    sleepers = {task.id for local, task in created.items() if local.startswith("c")}
    where = {"root_id": root}
    first = Follower(stub, watch_request(**where))
    resumed: list[Follower] = []

    def sleepers_done() -> bool:
        latest = {event.task_id: event.status for event in first.events}
        return all(latest.get(task_id) == COMPLETED for task_id in sleepers)

    try:
        await first.reach(committed_rows(db_url, **where)[-1][0])
        await client.execute_task(root)
        for _ in range(10):
            # Resume after the newest event seen, or inside the newest message of
            # several events, once a few more events have come.
            seen = len(first.events)
            await until(lambda s=seen: len(first.events) >= s + 5 or sleepers_done())
            after = inside_a_message(first.messages[-3:]) or first.sequences[-1]
            resumed.append(Follower(stub, watch_request(after_sequence=after, **where)))
        assert stored_tasks(db_url, root_id=root)[root]["status"] not in statuses.TERMINAL
        await until(sleepers_done)
        gates.open("end")
        await finish(client, root)
        expected = committed_rows(db_url, **where)
        for follower in (first, *resumed):
            await follower.reach(expected[-1][0])
    finally:
        for follower in (first, *resumed):
            await follower.close()
    assert_resumed(first, expected, "from the start")
    for index, follower in enumerate(resumed):
        assert follower.error is None, (index, follower.error)
        assert_resumed(follower, expected, f"resumed stream {index}")
    # The streams did resume mid-run: the end of the run came after all of them started.
    gated = {created["hold"].id, created["after hold"].id}
    finals = [row for row in expected if row[1] in gated and row[3] == statuses.COMPLETED]
    assert len(finals) == 2
    assert all(follower.request.after_sequence < finals[0][0] for follower in resumed)
