"""WatchEvents (DESIGN section 5) through a real server: replay and live merge without gap or
duplicate, resume after drops and restarts, fan-out, slow subscribers, compaction,
heartbeats, snapshots, filters, shutdown, and the SDK helpers built on the stream.

The `task_events` table is the ground truth: every committed event is there, numbered in
commit order, so a watcher must receive exactly the committed events that match its filter,
in order, each once. Tests read it with a synchronous SQLAlchemy engine.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import signal
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from support.database import committed, committed_sequences, db_of, stored_tasks
from support.events import Follower as StreamFollower
from support.events import stop_tasks
from support.executors import Gates, gate_task, pulse_registry
from support.status_details import error_info
from support.trees import sleep_tree
from support.waiting import until as wait_until
from support.waiting import wait_finished
from taskgrove import (
    AsyncClient,
    InvalidArgumentError,
    OutOfRangeError,
    Snapshot,
    TaskEvent,
    TaskManager,
    TaskTreeNode,
    UnavailableError,
    create_session,
    statuses,
)
from taskgrove._watch import watch_request
from taskgrove.domain import wire
from taskgrove.v1 import event_pb2, task_pb2, task_service_pb2_grpc
from taskgrove_server.app import TaskgroveServer

if TYPE_CHECKING:
    from conftest import ServerFactory
    from taskgrove_server.testing import ServerProcess

WAIT_S = 20.0


# ------------------------------------------------------------------ helpers


async def until(predicate: Callable[[], Any], limit_s: float = WAIT_S) -> None:
    await wait_until(predicate, limit_s, poll_s=0.005)


finish = partial(wait_finished, limit_s=WAIT_S)


def assert_exact(received: Sequence[int], expected: Sequence[int]) -> None:
    """`received` is exactly `expected`: same events, in order, each once."""
    duplicates = sorted(s for s, n in _counts(received).items() if n > 1)
    missing = sorted(set(expected) - set(received))
    extra = sorted(set(received) - set(expected))
    assert not duplicates, f"duplicated sequences: {duplicates[:20]}"
    assert not missing, f"{len(missing)} committed events never received: {missing[:20]}"
    assert not extra, f"received events that were not committed: {extra[:20]}"
    assert list(received) == sorted(received), "sequences not strictly increasing"
    assert list(received) == list(expected)


def _counts(values: Iterable[int]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts


class Follower(StreamFollower):
    """The shared stream reader, waiting as long (and polling as often) as `until`."""

    wait_s = WAIT_S
    poll_s = 0.005


def assert_resumable(follower: Follower) -> None:
    """Each message's `sequence` is a safe resume point: no later message carries an
    event at or below it (DESIGN 5: heartbeats carry the current sequence)."""
    high = follower.request.after_sequence
    for index, message in enumerate(follower.messages):
        sequences = [event.sequence for event in message.events]
        assert all(s > high for s in sequences), (
            f"message {index} carries events {sequences[:5]} at or below the sequence "
            f"{high} an earlier message (heartbeat={follower.messages[index - 1].heartbeat}) "
            "said had all been sent"
        )
        if sequences:
            assert message.sequence >= sequences[-1]
        assert message.sequence >= high
        high = message.sequence


# ------------------------------------------------------------------ 1. gap / duplicate freedom


async def test_resume_after_random_drops_is_gap_and_duplicate_free(
    make_server: ServerFactory,
) -> None:
    # Few executor slots and 1 ms tasks: the run commits in a few hundred small batches
    # however fast a commit is, so the stream has many messages to drop between.
    server = await make_server(max_concurrency=2)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(500, seconds=0.001, dep_every=3))
    root = created["root"].id
    rng = random.Random(20240611)

    received: list[int] = []
    last = 0
    drops = 0
    done = asyncio.Event()

    async def watcher() -> None:
        nonlocal last, drops
        while True:
            call = client.stub.WatchEvents(watch_request(root_id=root, after_sequence=last))
            after = last
            try:
                # Sometimes drop a stream before reading anything from it.
                if rng.random() < 0.1:
                    drops += 1
                    continue
                while True:
                    message = await call.read()
                    assert message is not grpc.aio.EOF, "a watch stream ended by itself"
                    sequences = [event.sequence for event in message.events]
                    assert all(s > after for s in sequences), (after, sequences[:5])
                    if sequences:
                        assert message.sequence >= sequences[-1]
                    received.extend(sequences)
                    last = max(last, message.sequence)
                    if done.is_set():
                        return
                    if rng.random() < 0.08:
                        drops += 1
                        break
            finally:
                call.cancel()

    watching = asyncio.create_task(watcher())
    try:
        await until(lambda: len(received) >= 501)  # every `created` event replayed
        await client.execute_task(root)
        await finish(client, root)
        expected = committed_sequences(db_of(server), root_id=root)
        await until(lambda: last >= expected[-1] or watching.done())
        done.set()
    finally:
        await stop_tasks(watching)
    assert drops >= 5, f"only {drops} drops: the test did not exercise resuming"
    assert_exact(received, expected)


async def test_sdk_watch_aclose_and_resume_is_gap_and_duplicate_free(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_concurrency=2)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(500, dep_every=4))
    root = created["root"].id
    rng = random.Random(7)
    received: list[int] = []
    last = 0
    drops = 0
    executed = False
    expected: list[int] | None = None

    async with asyncio.timeout(WAIT_S):
        while expected is None or last < expected[-1]:
            stream = client.watch(root_id=root, after_sequence=last, max_reconnects=0)
            try:
                async for item in stream:
                    assert isinstance(item, TaskEvent)
                    received.append(item.sequence)
                    last = item.sequence
                    if not executed and len(received) >= 501:
                        executed = True
                        await client.execute_task(root)
                    if (
                        expected is None
                        and item.task_id == root
                        and item.status in (statuses.TERMINAL)
                    ):
                        expected = committed_sequences(db_of(server), root_id=root)
                    if expected is not None and last >= expected[-1]:
                        break
                    if executed and rng.random() < 0.05:
                        drops += 1
                        break
            finally:
                await stream.aclose()
    assert drops >= 5
    assert expected is not None
    assert_exact(received, expected)


# ------------------------------------------------------------------ 2. server restart


async def test_sdk_watch_resumes_across_server_kill_and_restart(
    server_process: ServerProcess, db_url: str
) -> None:
    port = server_process.port
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": "u"}]
    # A short chain that completes across the restart...
    for index in range(15):
        specs.append(
            {
                "id": f"s{index}",
                "name": "sleep_executor",
                "parent_id": "root",
                "inputs": {"seconds": 0.05},
                "dependencies": [f"s{index - 1}"] if index else [],
                "max_attempts": 3,  # an interrupted attempt is retried after the restart
            }
        )
    # ...long tasks certainly still running at the kill, and tasks waiting for them.
    for index in range(5):
        specs.append(
            {
                "id": f"long{index}",
                "name": "sleep_executor",
                "parent_id": "root",
                "inputs": {"seconds": 60},
            }
        )
        specs.append(
            {
                "id": f"after{index}",
                "name": "sleep_executor",
                "parent_id": "root",
                "inputs": {"seconds": 0},
                "dependencies": [f"long{index}"],
            }
        )
    async with AsyncClient(server_process.address) as client:
        created = await client.create_task_tree(specs)
        root = created["root"].id
        ids = {task.id for task in created.values()}
        seen: list[TaskEvent] = []
        latest: dict[str, TaskEvent] = {}

        async def watcher() -> None:
            async for item in client.watch(root_id=root, max_backoff=0.5):
                assert isinstance(item, TaskEvent)
                seen.append(item)
                latest[item.task_id] = item

        def status_of(task_id: str) -> str | None:
            event = latest.get(task_id)
            return event.status if event else None

        watching = asyncio.create_task(watcher())
        try:
            await until(lambda: len(seen) >= len(ids))  # subscribed: creations replayed
            await client.execute_task(root)
            await until(
                lambda: (
                    status_of(created["s0"].id) == statuses.COMPLETED
                    and all(status_of(created[f"long{i}"].id) == "in_progress" for i in range(5))
                )
            )
            await asyncio.to_thread(server_process.stop, signal.SIGKILL)

            # What survived the kill: events and state, committed together.
            at_kill = stored_tasks(db_url, root)
            assert_events_match_state(committed(db_url, root_id=root), at_kill)
            running_at_kill = {  # executable tasks whose attempt the kill interrupted
                task_id
                for task_id, row in at_kill.items()
                if row["status"] == "in_progress" and row["executor"] is not None
            }
            assert {created[f"long{i}"].id for i in range(5)} <= running_at_kill

            await asyncio.to_thread(server_process.start, port)
            assert server_process.port == port
            await until(
                lambda: (
                    set(latest) == ids
                    and all(event.status in statuses.TERMINAL for event in latest.values())
                )
            )
            expected = committed_sequences(db_url, root_id=root)
            await until(lambda: seen[-1].sequence >= expected[-1])
        finally:
            await stop_tasks(watching)

        assert_exact([event.sequence for event in seen], expected)
        final = stored_tasks(db_url, root)
        assert all(row["status"] in statuses.TERMINAL for row in final.values())
        for task_id in running_at_kill:
            if at_kill[task_id]["max_attempts"] == 1:
                assert final[task_id]["status"] == statuses.FAILED
                assert final[task_id]["error"]["reason"] == "ABANDONED"
                assert latest[task_id].error is not None
                assert latest[task_id].error.reason == "ABANDONED"
            else:
                assert final[task_id]["status"] == statuses.COMPLETED
                assert final[task_id]["attempt"] > at_kill[task_id]["attempt"]
        # The chain went on after the restart and finished.
        assert latest[created["s14"].id].status == statuses.COMPLETED
        assert_events_match_state(committed(db_url, root_id=root), final)


# ------------------------------------------------------------------ 3. fan-out


async def test_hundred_concurrent_watchers_all_receive_every_event(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(200))
    root = created["root"].id
    followers = [Follower(client.stub, watch_request(root_id=root)) for _ in range(100)]
    try:
        await until(lambda: server.hub.subscriber_count == 100)
        await client.execute_task(root)
        await finish(client, root)
        expected = committed_sequences(db_of(server), root_id=root)
        for follower in followers:
            await follower.reach(expected[-1])
    finally:
        for follower in followers:
            await follower.close()
    for follower in followers:
        assert follower.error is None
        assert_exact(follower.sequences, expected)
        assert_resumable(follower)


# ------------------------------------------------------------------ 4. slow subscriber


async def test_slow_subscriber_is_cut_off_without_holding_up_the_run(
    make_server: ServerFactory,
) -> None:
    # Small commits (2 executor slots) keep each published batch far below the buffer, and
    # the buffer leaves the watcher that reads room for a scheduling hiccup (with 50, one
    # of 20 runs cut it off too); the run's ~1,800 events overflow the one that does not.
    server = await make_server(watcher_buffer_events=200, max_concurrency=2)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(600))
    root = created["root"].id
    # The slow watcher's own channel with a tiny flow-control window: once it stops
    # reading, the server's writes to it block and its buffer fills.
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
    )
    try:
        slow = task_service_pb2_grpc.TaskServiceStub(channel).WatchEvents(
            watch_request(root_id=root)
        )
        first = await slow.read()
        assert len(first.events) == 601  # the replayed creations
        reader = Follower(client.stub, watch_request(root_id=root))
        try:
            await reader.reach(first.sequence)
            await client.execute_task(root)
            await finish(client, root)  # the run does not wait for the slow watcher
            expected = committed_sequences(db_of(server), root_id=root)
            await reader.reach(expected[-1])
            assert reader.error is None
            assert_exact(reader.sequences, expected)
        finally:
            await reader.close()

        # The slow watcher resumes reading: what it got is a gap-free prefix, then the end.
        got = [event.sequence for event in first.events]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(WAIT_S):
                while True:
                    message = await slow.read()
                    assert message is not grpc.aio.EOF
                    got.extend(event.sequence for event in message.events)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, _, _ = error_info(raised.value)
        assert reason == "SUBSCRIBER_TOO_SLOW"
        assert got == expected[: len(got)]
        assert len(got) < len(expected)
        await until(lambda: server.hub.subscriber_count == 0)
    finally:
        await channel.close()


async def test_sdk_watch_resumes_after_being_cut_off_as_too_slow(
    make_server: ServerFactory,
) -> None:
    server = await make_server(watcher_buffer_events=20, max_concurrency=2)
    created = await make_server.client(server).create_task_tree(sleep_tree(300))
    root = created["root"].id
    # A tiny flow-control window: while the consumer does not read, the server's writes
    # block and the watcher's buffer overflows.
    client = AsyncClient(
        f"127.0.0.1:{server.port}",
        options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
    )
    streams = 0
    open_stream = client.stub.WatchEvents

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal streams
        streams += 1
        return open_stream(*args, **kwargs)

    client.stub.WatchEvents = counting  # type: ignore[method-assign]
    received: list[int] = []
    expected: list[int] = []
    stream = client.watch(root_id=root, max_backoff=0.2)
    try:
        async with asyncio.timeout(WAIT_S):
            async for item in stream:
                assert isinstance(item, TaskEvent)
                received.append(item.sequence)
                if len(received) == 301:
                    await client.execute_task(root)
                    # Stop reading until the run is over.
                    await finish(client, root)
                    expected = committed_sequences(db_of(server), root_id=root)
                if expected and item.sequence >= expected[-1]:
                    break
    finally:
        await stream.aclose()
        await client.close()
    assert streams >= 2, "the watcher was never cut off: the test did not exercise resuming"
    assert_exact(received, expected)


async def test_watcher_that_keeps_reading_is_not_cut_off_by_one_large_commit(
    make_server: ServerFactory,
) -> None:
    # One CreateTaskTree commits all its `created` events at once. A watcher that is idle
    # and reading has not fallen behind: it must get them, not SUBSCRIBER_TOO_SLOW. (With
    # the defaults: a tree of more than 50,000 tasks, max_tree_size being 200,000.)
    server = await make_server(watcher_buffer_events=50)
    client = make_server.client(server)
    follower = Follower(client.stub, watch_request(user_id="u", heartbeat_interval=0.05))
    try:
        await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
        created = await client.create_task_tree(sleep_tree(100))
        expected = committed_sequences(db_of(server), root_id=created["root"].id)
        await follower.reach(expected[-1])
    finally:
        await follower.close()
    assert follower.error is None
    assert_exact(follower.sequences, expected)


# ------------------------------------------------------------------ 5. compaction


async def test_compacted_history_is_refused_with_the_oldest_sequence(
    make_server: ServerFactory,
) -> None:
    server = await make_server(event_retention_seconds=0)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(10, user_id="carol"), execute=True)
    root = created["root"].id
    child = created["c3"].id
    await finish(client, root)
    before = committed_sequences(db_of(server), root_id=root)
    await server.prune_events()
    assert committed_sequences(db_of(server), root_id=root) == []
    through = before[-1]

    for request in (
        watch_request(root_id=root, after_sequence=1),
        watch_request(root_id=root, after_sequence=through - 1),
        watch_request(task_id=child, after_sequence=1),
        watch_request(user_id="carol", after_sequence=1),
    ):
        follower = Follower(client.stub, request)
        async with asyncio.timeout(WAIT_S):
            await follower.ended.wait()
        assert follower.events == []
        assert follower.error is not None, request
        assert follower.error.code() == grpc.StatusCode.OUT_OF_RANGE
        reason, metadata, _ = error_info(follower.error)
        assert reason == "EVENTS_COMPACTED"
        assert metadata["oldest_sequence"] == str(through + 1)

    # From the start (nothing old replayed) and from the compaction point: streams work.
    for after in (0, through):
        follower = Follower(
            client.stub, watch_request(root_id=root, after_sequence=after, heartbeat_interval=0.05)
        )
        try:
            await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
            assert follower.events == []
            assert follower.error is None
        finally:
            await follower.close()

    snapshot = Follower(client.stub, watch_request(root_id=root, include_snapshot=True))
    try:
        await snapshot.wait_for(lambda f: f.messages)
        first = snapshot.messages[0]
        assert {task.id for task in first.snapshot} == {t.id for t in created.values()}
        assert all(task.status == task_pb2.TASK_STATUS_COMPLETED for task in first.snapshot)
        assert first.sequence >= through
        assert snapshot.error is None
    finally:
        await snapshot.close()


async def test_sdk_watch_raises_compacted_and_invalid_errors(make_server: ServerFactory) -> None:
    server = await make_server(event_retention_seconds=0)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(5), execute=True)
    root = created["root"].id
    await finish(client, root)
    through = committed_sequences(db_of(server), root_id=root)[-1]
    await server.prune_events()

    with pytest.raises(OutOfRangeError) as compacted:
        async with asyncio.timeout(WAIT_S):
            async for _ in client.watch(root_id=root, after_sequence=1):
                pass
    assert compacted.value.reason == "EVENTS_COMPACTED"
    assert compacted.value.metadata["oldest_sequence"] == str(through + 1)

    with pytest.raises(InvalidArgumentError):
        async with asyncio.timeout(WAIT_S):
            async for _ in client.watch(root_id=root, task_id=root):
                pass
    await until(lambda: server.hub.subscriber_count == 0)


async def test_sequences_are_not_reused_after_pruning_and_restart(
    make_server: ServerFactory,
) -> None:
    server = await make_server(event_retention_seconds=0)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(5), execute=True)
    old_root = created["root"].id
    await finish(client, old_root)
    through = committed_sequences(db_of(server))[-1]
    await server.prune_events()
    assert committed_sequences(db_of(server)) == []
    db_url = db_of(server)
    await make_server.stop(server)

    restarted = await make_server(db_url=db_url, event_retention_seconds=0)
    client = make_server.client(restarted)
    fresh = await client.create_task_tree(sleep_tree(3), execute=True)
    await finish(client, fresh["root"].id)
    new = committed_sequences(db_url)
    assert new[0] == through + 1, "a pruned sequence was handed out again"
    # The pruned tree still refuses its old history; the new tree replays in full.
    old = Follower(client.stub, watch_request(root_id=old_root, after_sequence=1))
    replay = Follower(client.stub, watch_request(root_id=fresh["root"].id, after_sequence=0))
    try:
        async with asyncio.timeout(WAIT_S):
            await old.ended.wait()
        await replay.reach(new[-1])
    finally:
        await old.close()
        await replay.close()
    assert old.error is not None
    assert old.error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert_exact(replay.sequences, new)


# ------------------------------------------------------------------ 6. heartbeats


async def test_idle_stream_sends_heartbeats_with_the_current_sequence(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    first = await client.create_task_tree(sleep_tree(5), execute=True)
    await finish(client, first["root"].id)
    other = await client.create_task_tree(sleep_tree(5), execute=True)
    await finish(client, other["root"].id)
    newest = committed_sequences(db_of(server))[-1]
    root = first["root"].id
    follower = Follower(client.stub, watch_request(root_id=root, heartbeat_interval=0.05))
    try:
        await follower.wait_for(lambda f: sum(m.heartbeat for m in f.messages) >= 3)
    finally:
        await follower.close()
    assert_exact(follower.sequences, committed_sequences(db_of(server), root_id=root))
    beats = [m for m in follower.messages if m.heartbeat]
    assert all(not m.events and not m.snapshot for m in beats)
    assert all(not m.heartbeat for m in follower.messages if m.events)
    # Idle: every matching event up to the newest one anywhere has been sent.
    assert [m.sequence for m in beats[:3]] == [newest] * 3


async def test_heartbeat_after_restart_carries_the_stored_sequence(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(5), execute=True)
    await finish(client, created["root"].id)
    db_url = db_of(server)
    newest = committed_sequences(db_url)[-1]
    await make_server.stop(server)

    restarted = await make_server(db_url=db_url)
    client = make_server.client(restarted)
    follower = Follower(client.stub, watch_request(user_id="nobody", heartbeat_interval=0.05))
    try:
        await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
    finally:
        await follower.close()
    beat = next(m for m in follower.messages if m.heartbeat)
    assert beat.sequence == newest


async def test_heartbeats_never_claim_unsent_events(make_server: ServerFactory) -> None:
    # Watchers with the shortest heartbeat interval; events arrive right when they go idle.
    # A heartbeat must not carry a sequence above events still buffered for the watcher:
    # a client resuming from it (the SDK does) would skip them.
    # Heartbeats as often as events: the race between them is the point.
    server = await make_server(registry=pulse_registry(), min_heartbeat_seconds=0.01)
    client = make_server.client(server)
    heartbeat_s = 0.01
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": "u"}]
    for index in range(60):
        specs.append(
            {
                "id": f"p{index}",
                "name": f"p{index}",
                "executor": "pulse",
                "parent_id": "root",
                "inputs": {"yields": index % 20, "hold_s": 2 * heartbeat_s},
                "dependencies": [f"p{index - 1}"] if index else [],
            }
        )
    created = await client.create_task_tree(specs)
    root = created["root"].id
    raw = [
        Follower(client.stub, watch_request(root_id=root, heartbeat_interval=heartbeat_s))
        for _ in range(10)
    ]
    sdk_received: list[list[int]] = [[] for _ in range(10)]

    async def sdk_watch(into: list[int]) -> None:
        async for item in client.watch(root_id=root, heartbeat_interval=heartbeat_s):
            assert isinstance(item, TaskEvent)
            into.append(item.sequence)

    sdk = [asyncio.create_task(sdk_watch(into)) for into in sdk_received]
    try:
        await until(lambda: server.hub.subscriber_count == 20)
        await client.execute_task(root)
        await finish(client, root)
        expected = committed_sequences(db_of(server), root_id=root)
        for follower in raw:
            await follower.wait_for(lambda f: f.last >= expected[-1])
        # The SDK watchers have nothing more to receive once heartbeats reach the end.
        await until(lambda: all(f.messages[-1].heartbeat for f in raw))
        await asyncio.sleep(5 * heartbeat_s)
    finally:
        for follower in raw:
            await follower.close()
        await stop_tasks(*sdk)
    for follower in raw:
        assert_exact(follower.sequences, expected)
    lost = {
        index: sorted(set(expected) - set(received))
        for index, received in enumerate(sdk_received)
        if received != expected
    }
    assert not lost, f"{len(lost)} of {len(sdk)} SDK watchers lost events: {lost}"
    for follower in raw:
        assert_resumable(follower)


# ------------------------------------------------------------------ 7. snapshot then live


async def test_snapshot_then_live_events_without_duplicates(make_server: ServerFactory) -> None:
    gates = Gates(limit_s=WAIT_S)
    server = await make_server(registry=gates.registry())
    client = make_server.client(server)
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": "u"}]
    specs += [gate_task(f"a{i}", "a") for i in range(10)]
    specs += [gate_task(f"b{i}", "b", deps=[f"a{i}"]) for i in range(10)]
    specs += sleep_tree(20)[1:]
    created = await client.create_task_tree(specs, execute=True)
    root = created["root"].id
    await until(lambda: "a" in gates.started)
    await until(
        lambda: all(
            row["status"] == "completed"
            for row in stored_tasks(db_of(server), root).values()
            if row["executor"] == "sleep_executor"
        )
    )

    follower = Follower(client.stub, watch_request(root_id=root, include_snapshot=True))
    try:
        await follower.wait_for(lambda f: f.messages)
        first = follower.messages[0]
        assert not first.events
        snapshot_seq = first.sequence
        # The snapshot reflects exactly the events committed up to its sequence.
        history = committed(db_of(server), root_id=root)
        status_at: dict[str, str] = {}
        for row in history:
            if row["sequence"] <= snapshot_seq:
                status_at[row["task_id"]] = row["status"]
        snap = {task.id: task for task in first.snapshot}
        assert set(snap) == {task.id for task in created.values()}
        for task_id, task in snap.items():
            assert wire.status_from_proto(task.status) == status_at[task_id], task.name
        assert snap[created["a0"].id].status == task_pb2.TASK_STATUS_IN_PROGRESS
        assert snap[created["b0"].id].status == task_pb2.TASK_STATUS_PENDING

        gates.open("a")
        gates.open("b")
        await finish(client, root)
        expected = [s for s in committed_sequences(db_of(server), root_id=root) if s > snapshot_seq]
        assert expected, "no event after the snapshot: the test did not exercise live events"
        await follower.reach(expected[-1])
    finally:
        await follower.close()
    assert all(not m.snapshot for m in follower.messages[1:])
    assert_exact(follower.sequences, expected)
    assert_resumable(follower)
    # Snapshot + events = the final state.
    final = {task.id: wire.status_from_proto(task.status) for task in first.snapshot}
    for event in follower.events:
        final[event.task_id] = wire.status_from_proto(event.status)
    stored = stored_tasks(db_of(server), root)
    assert final == {task_id: row["status"] for task_id, row in stored.items()}


async def test_snapshots_taken_while_the_writer_commits_match_their_sequence(
    make_server: ServerFactory,
) -> None:
    # Snapshots taken while a run commits all the time: the tasks of each must be exactly
    # the state after the events up to its sequence. Tasks ahead of it would make the
    # following events (already reflected) duplicates; tasks behind it, gaps.
    server = await make_server(max_concurrency=8)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(800, dep_every=4))
    root = created["root"].id
    await client.execute_task(root)
    snapshots: list[Follower] = []
    try:
        for _ in range(40):
            snapshots.append(
                Follower(client.stub, watch_request(root_id=root, include_snapshot=True))
            )
            await asyncio.sleep(0.005)
        for follower in snapshots:
            await follower.wait_for(lambda f: f.messages)
        await finish(client, root)
    finally:
        for follower in snapshots:
            await follower.close()
    history = committed(db_of(server), root_id=root)
    inconsistent = {}
    for index, follower in enumerate(snapshots):
        first = follower.messages[0]
        reflected: dict[str, str] = {}
        for row in history:
            if row["sequence"] <= first.sequence:
                reflected[row["task_id"]] = row["status"]
        state = {task.id: wire.status_from_proto(task.status) for task in first.snapshot}
        differing = sorted(t for t in state if state[t] != reflected.get(t))
        if differing:
            example = differing[0]
            inconsistent[index] = (
                first.sequence,
                len(differing),
                f"e.g. snapshot {state[example]!r}, events "
                + str([(r["sequence"], r["status"]) for r in history if r["task_id"] == example]),
            )
    assert not inconsistent, (
        f"{len(inconsistent)} of {len(snapshots)} snapshots do not match the events up to "
        f"their sequence (index: (sequence, tasks differing, example)): {inconsistent}"
    )


async def test_sdk_watch_yields_snapshot_first(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(20))
    root = created["root"].id
    items: list[Snapshot | TaskEvent] = []
    stream = client.watch(root_id=root, include_snapshot=True)
    try:
        async with asyncio.timeout(WAIT_S):
            async for item in stream:
                items.append(item)
                if isinstance(item, Snapshot):
                    await client.execute_task(root)
                elif item.task_id == root and item.status in statuses.TERMINAL:
                    break
    finally:
        await stream.aclose()
    snapshot = items[0]
    assert isinstance(snapshot, Snapshot)
    assert {task.id for task in snapshot.tasks} == {task.id for task in created.values()}
    events = [item for item in items[1:] if isinstance(item, TaskEvent)]
    assert len(events) == len(items) - 1
    expected = [
        s for s in committed_sequences(db_of(server), root_id=root) if s > snapshot.sequence
    ]
    assert_exact([event.sequence for event in events], expected)
    assert all(event.type != "created" for event in events)


# ------------------------------------------------------------------ 8. filters


async def test_task_and_user_filters(server: TaskgroveServer, client: AsyncClient) -> None:
    alice = await client.create_task_tree(sleep_tree(20, user_id="alice"))
    bob = await client.create_task_tree(sleep_tree(20, user_id="bob"))
    task_id = alice["c4"].id  # depends on c3
    by_task = Follower(client.stub, watch_request(task_id=task_id))
    by_user = Follower(client.stub, watch_request(user_id="alice"))
    by_root_and_user = Follower(client.stub, watch_request(root_id=bob["root"].id, user_id="bob"))
    followers = [by_task, by_user, by_root_and_user]
    try:
        await until(lambda: server.hub.subscriber_count == 3)
        await client.execute_task(alice["root"].id)
        await client.execute_task(bob["root"].id)
        await finish(client, alice["root"].id)
        await finish(client, bob["root"].id)
        db_url = db_of(server)
        expected = {
            id(by_task): committed_sequences(db_url, task_id=task_id),
            id(by_user): committed_sequences(db_url, user_id="alice"),
            id(by_root_and_user): committed_sequences(db_url, root_id=bob["root"].id),
        }
        for follower in followers:
            await follower.reach(expected[id(follower)][-1])
    finally:
        for follower in followers:
            await follower.close()
    for follower in followers:
        assert follower.error is None
        assert_exact(follower.sequences, expected[id(follower)])
        assert_resumable(follower)
    assert {event.task_id for event in by_task.events} == {task_id}
    assert by_task.events[0].type == event_pb2.TASK_EVENT_TYPE_CREATED
    assert {event.user_id for event in by_user.events} == {"alice"}
    assert {event.root_id for event in by_user.events} == {alice["root"].id}
    assert {event.user_id for event in by_root_and_user.events} == {"bob"}


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"root_id": "r", "task_id": "t"}, "task_id"),
        ({"after_sequence": -1}, "after_sequence"),
        ({"root_id": "r", "after_sequence": -5}, "after_sequence"),
    ],
)
async def test_invalid_watch_requests(
    server: TaskgroveServer, client: AsyncClient, fields: dict[str, Any], bad_field: str
) -> None:
    follower = Follower(client.stub, watch_request(**fields))
    async with asyncio.timeout(WAIT_S):
        await follower.ended.wait()
    assert follower.error is not None
    assert follower.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, _, violations = error_info(follower.error)
    assert bad_field in violations
    await until(lambda: server.hub.subscriber_count == 0)


async def ended_with(client: AsyncClient, request: Any) -> grpc.aio.AioRpcError:
    follower = Follower(client.stub, request)
    async with asyncio.timeout(WAIT_S):
        await follower.ended.wait()
    assert follower.messages == [], "an error must come before anything is streamed"
    assert follower.error is not None, request
    return follower.error


@pytest.mark.parametrize("snapshot", [False, True], ids=["replay", "snapshot"])
async def test_watching_a_task_that_does_not_exist_is_not_found(
    server: TaskgroveServer, client: AsyncClient, snapshot: bool
) -> None:
    created = await client.create_task_tree(sleep_tree(2))
    child = created["c1"].id
    for fields, field in (
        ({"root_id": "01a24b60-0000-7000-8000-000000000000"}, "root_id"),
        ({"task_id": "no such task"}, "task_id"),
        ({"root_id": child}, "root_id"),  # a task that is not a root roots no tree
    ):
        error = await ended_with(client, watch_request(include_snapshot=snapshot, **fields))
        assert error.code() == grpc.StatusCode.NOT_FOUND, fields
        reason, metadata, violations = error_info(error)
        assert (reason, violations) == ("TASK_NOT_FOUND", [field])
        assert metadata["id"] == next(iter(fields.values()))
    # What exists is watched, by root and by task.
    for fields in ({"root_id": created["root"].id}, {"task_id": child}):
        follower = Follower(client.stub, watch_request(include_snapshot=snapshot, **fields))
        try:
            await follower.wait_for(lambda f: f.messages)
            assert follower.error is None
        finally:
            await follower.close()
    await until(lambda: server.hub.subscriber_count == 0)


async def test_a_deleted_task_is_watched_while_its_events_remain(client: AsyncClient) -> None:
    task = await client.create_task(name="sleep_executor")
    await client.delete_task(task.id)
    follower = Follower(client.stub, watch_request(task_id=task.id, heartbeat_interval=0.05))
    try:
        await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
    finally:
        await follower.close()
    assert follower.error is None
    assert [event.type for event in follower.events] == [
        event_pb2.TASK_EVENT_TYPE_CREATED,
        event_pb2.TASK_EVENT_TYPE_DELETED,
    ]


async def test_resuming_beyond_the_newest_event_is_out_of_range(
    make_server: ServerFactory,
) -> None:
    server = await make_server(event_retention_seconds=0)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(3), execute=True)
    root = created["root"].id
    await finish(client, root)
    head = committed_sequences(db_of(server))[-1]
    for fields in ({"root_id": root}, {"user_id": "default"}, {}):
        error = await ended_with(client, watch_request(after_sequence=head + 1, **fields))
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        reason, metadata, violations = error_info(error)
        assert (reason, metadata, violations) == (
            "SEQUENCE_AHEAD",
            {"head_sequence": str(head)},
            ["after_sequence"],
        )
    # The head itself is a resume point, also once every event is pruned (the log's
    # head does not move back) and after a restart.
    await server.prune_events()
    assert committed_sequences(db_of(server)) == []
    db_url = db_of(server)
    await make_server.stop(server)
    restarted = await make_server(db_url=db_url)
    client = make_server.client(restarted)
    follower = Follower(
        client.stub, watch_request(root_id=root, after_sequence=head, heartbeat_interval=0.05)
    )
    try:
        await follower.wait_for(lambda f: any(m.heartbeat for m in f.messages))
        assert follower.error is None
    finally:
        await follower.close()
    error = await ended_with(client, watch_request(root_id=root, after_sequence=head + 1))
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE


# ------------------------------------------------------------------ 9. shutdown


async def test_server_shutdown_ends_open_streams_with_unavailable(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(5))
    root = created["root"].id
    live = Follower(client.stub, watch_request(root_id=root))
    everything = Follower(client.stub, watch_request())
    await live.reach(committed_sequences(db_of(server), root_id=root)[-1])
    await everything.wait_for(lambda f: f.events)
    try:
        async with asyncio.timeout(WAIT_S):
            await make_server.stop(server, grace=5)
            await live.ended.wait()
            await everything.ended.wait()
    finally:
        await live.close()
        await everything.close()
    for follower in (live, everything):
        assert follower.error is not None
        assert follower.error.code() == grpc.StatusCode.UNAVAILABLE
        reason, _, _ = error_info(follower.error)
        assert reason == "SERVER_SHUTTING_DOWN"


async def test_sdk_watch_gives_up_after_max_reconnects(make_server: ServerFactory) -> None:
    server = await make_server()
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(2))
    stream = client.watch(root_id=created["root"].id, max_reconnects=2, max_backoff=0.05)
    try:
        async with asyncio.timeout(WAIT_S):
            first = await anext(stream)
            assert isinstance(first, TaskEvent)
            await make_server.stop(server, grace=1)
            with pytest.raises(UnavailableError):
                async for _ in stream:
                    pass
    finally:
        await stream.aclose()


# ------------------------------------------------------------------ 10. same transaction


def assert_events_match_state(
    history: Sequence[dict[str, Any]], stored: dict[str, dict[str, Any]]
) -> None:
    """Each task's events start with `created`, chain their statuses, and end in the
    task's stored status (and error)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in history:
        by_task[row["task_id"]].append(row)
    assert set(by_task) == set(stored)
    for task_id, rows in by_task.items():
        assert rows[0]["type"] == "created", rows[0]
        assert rows[0]["previous_status"] is None
        assert rows[0]["status"] == statuses.PENDING
        assert [row["type"] for row in rows].count("created") == 1
        for before, after in itertools.pairwise(rows):
            if after["type"] == "status_changed":
                assert after["previous_status"] == before["status"], (before, after)
            else:
                assert after["status"] == before["status"], (before, after)
        row = stored[task_id]
        assert rows[-1]["status"] == row["status"], (task_id, rows[-1], row["status"])
        if row["error"]:
            assert rows[-1]["error"]["reason"] == row["error"]["reason"]


async def test_every_change_has_its_event(server: TaskgroveServer, client: AsyncClient) -> None:
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": "u"}]
    specs.append({"id": "g", "name": "group", "parent_id": "root"})
    for index in range(30):
        inputs: dict[str, Any] = {"seconds": 0.02 if index % 3 == 0 else 0}
        if index % 7 == 6:
            inputs["fail"] = True
        specs.append(
            {
                "id": f"c{index}",
                "name": "sleep_executor",
                "parent_id": "g" if index % 2 else "root",
                "inputs": inputs,
                "dependencies": [f"c{index - 1}"] if index % 5 == 0 and index else [],
            }
        )
    created = await client.create_task_tree(specs, execute=True)
    root = created["root"].id
    await finish(client, root)
    db_url = db_of(server)
    history = committed(db_url, root_id=root)
    stored = stored_tasks(db_url, root)
    assert_events_match_state(history, stored)
    assert {row["status"] for row in stored.values()} >= {"completed", "failed"}
    assert any(row["type"] == "progress" for row in history)
    sequences = [row["sequence"] for row in committed(db_url)]
    assert sequences == list(range(1, len(sequences) + 1))


# ------------------------------------------------------------------ 11. distribute_task_tree


async def test_distribute_task_tree_updates_nodes_as_events_arrive(
    make_server: ServerFactory,
) -> None:
    gates = Gates(limit_s=WAIT_S)
    server = await make_server(registry=gates.registry())
    session = create_session(f"127.0.0.1:{server.port}")
    try:
        manager = TaskManager(session)
        repo = manager.task_repository
        root_task = await repo.create_task(name="root", user_id="u")
        first = await repo.create_task(
            name="first", executor="gate", parent_id=root_task.id, inputs={"gate": "first"}
        )
        group = await repo.create_task(name="group", parent_id=root_task.id)
        second = await repo.create_task(
            name="second",
            executor="gate",
            parent_id=group.id,
            inputs={"gate": "second"},
            dependencies=[first.id],
        )
        quick = await repo.create_task(
            name="quick", executor="sleep_executor", parent_id=group.id, inputs={"seconds": 0}
        )
        root = TaskTreeNode(root_task)
        nodes = {task.id: TaskTreeNode(task) for task in (first, group, second, quick, root_task)}
        nodes[root_task.id] = root
        root.add_child(nodes[first.id])
        root.add_child(nodes[group.id])
        nodes[group.id].add_child(nodes[second.id])
        nodes[group.id].add_child(nodes[quick.id])

        seen: list[TaskEvent] = []
        node_status_when_seen: list[tuple[str, str, str]] = []

        def on_event(event: TaskEvent) -> None:
            seen.append(event)
            node = nodes[event.task_id]
            node_status_when_seen.append((event.task_id, event.status, node.task.status))
            # The run can only go on once the stream has delivered this event.
            if event.task_id == first.id and event.status == "in_progress":
                gates.open("first")
            if event.task_id == second.id and event.status == "in_progress":
                gates.open("second")

        async with asyncio.timeout(WAIT_S):
            result = await manager.distribute_task_tree(root, on_event=on_event)
    finally:
        await session.close()

    assert result is root
    assert gates.started == {"first", "second"}
    # Each node already had the event's status when `on_event` saw the event.
    for event_task, event_status, node_status in node_status_when_seen:
        assert node_status == event_status, (event_task, event_status, node_status)
    sequences = [event.sequence for event in seen]
    assert sequences == sorted(set(sequences))
    for task_id in nodes:
        assert any(e.task_id == task_id and e.status == "completed" for e in seen), task_id
    for node in root.walk():
        assert node.task.status == statuses.COMPLETED, node
    assert {node.task.id for node in root.walk()} == set(nodes)


async def test_distribute_task_tree_leaves_no_watch_open(
    server: TaskgroveServer,
) -> None:
    session = create_session(f"127.0.0.1:{server.port}")
    try:
        manager = TaskManager(session)
        for _ in range(3):
            root_task = await manager.task_repository.create_task(name="root", user_id="u")
            root = TaskTreeNode(root_task)
            for _ in range(3):
                child = await manager.task_repository.create_task(
                    name="sleep_executor", parent_id=root_task.id, inputs={"seconds": 0}
                )
                root.add_child(TaskTreeNode(child))
            async with asyncio.timeout(WAIT_S):
                await manager.distribute_task_tree(root)
            assert root.task.status == statuses.COMPLETED
        # The session stays open: its finished waits must not keep server streams.
        await subscriptions_drop_to(server, 0)
    finally:
        await session.close()


# ------------------------------------------------------------------ 12. cancellation


SUBSCRIPTION_WAIT_S = 5.0


async def subscriptions_drop_to(server: TaskgroveServer, count: int) -> None:
    try:
        await until(lambda: server.hub.subscriber_count == count, SUBSCRIPTION_WAIT_S)
    except TimeoutError:
        pytest.fail(f"{server.hub.subscriber_count} subscriptions left, expected {count}")


async def test_cancelling_a_raw_stream_frees_the_subscription(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(3))
    raw = Follower(client.stub, watch_request(root_id=created["root"].id))
    await raw.wait_for(lambda f: f.events)
    assert server.hub.subscriber_count == 1
    await raw.close()
    await subscriptions_drop_to(server, 0)


async def test_closing_the_sdk_watch_frees_the_subscription(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(3))
    stream = client.watch(root_id=created["root"].id)
    async with asyncio.timeout(WAIT_S):
        await anext(stream)
    assert server.hub.subscriber_count == 1
    await stream.aclose()
    await subscriptions_drop_to(server, 0)


async def test_breaking_out_of_the_sdk_watch_frees_the_subscription(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(3))

    async def first_event() -> TaskEvent | Snapshot:
        async for item in client.watch(root_id=created["root"].id):
            return item
        raise AssertionError("the stream ended")

    async with asyncio.timeout(WAIT_S):
        await first_event()
    await subscriptions_drop_to(server, 0)


async def test_cancelling_sdk_watch_consumers_frees_their_subscriptions(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    await client.create_task_tree(sleep_tree(3))

    async def consume() -> None:
        async for _ in client.watch(user_id="u", include_snapshot=True):
            pass

    consumers = [asyncio.create_task(consume()) for _ in range(5)]
    await until(lambda: server.hub.subscriber_count == 5)
    for consumer in consumers:
        consumer.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await subscriptions_drop_to(server, 0)


async def test_closing_the_channel_frees_the_subscription(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    created = await client.create_task_tree(sleep_tree(3))
    async with AsyncClient(f"127.0.0.1:{server.port}") as other:
        orphan = Follower(other.stub, watch_request(root_id=created["root"].id))
        await until(lambda: server.hub.subscriber_count == 1)
    await subscriptions_drop_to(server, 0)
    await orphan.close()


async def test_streams_cancelled_mid_write_leave_no_unretrieved_errors(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Clients that disconnect while the server is writing to them are normal: the server
    # must not log "Task exception was never retrieved" (an ERROR with a traceback) for
    # each of them.
    server = await make_server(max_concurrency=2)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(300))
    root = created["root"].id
    followers = [Follower(client.stub, watch_request(root_id=root)) for _ in range(30)]
    await until(lambda: server.hub.subscriber_count == len(followers))
    await client.execute_task(root)
    for follower in followers:
        await asyncio.sleep(0.005)
        await follower.close()
    await finish(client, root)
    await subscriptions_drop_to(server, 0)
    gc.collect()
    await asyncio.sleep(0.05)
    unretrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not unretrieved, (
        f"{len(unretrieved)} unretrieved task errors logged, e.g. {unretrieved[0].exc_text!r}"
    )
