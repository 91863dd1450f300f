"""WatchEvents under load and faults (DESIGN section 5): many watchers, random drops,
repeated SIGKILL restarts, slow readers, snapshots joining mid-run, heartbeats racing
live events, and pruning while trees run.

Ground truth is the `task_events` table (read with a synchronous SQLAlchemy engine): a
watcher must receive exactly the committed events matching its filter, in order, once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from support.database import (
    committed,
    committed_count,
    committed_sequences,
    db_of,
    stored_tasks,
)
from support.events import Follower, stop_tasks
from support.executors import pulse_registry
from support.status_details import reason_of
from support.trees import sleep_tree as shared_sleep_tree
from support.waiting import until as wait_until
from support.waiting import wait_finished
from taskgrove import AsyncClient, Snapshot, TaskEvent, statuses
from taskgrove._watch import watch_request
from taskgrove.domain import wire
from taskgrove.v1 import task_service_pb2_grpc
from taskgrove_server.testing import ServerProcess

if TYPE_CHECKING:
    from conftest import ServerFactory

pytestmark = pytest.mark.soak

WAIT_S = 90.0
TINY_WINDOW = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


# ------------------------------------------------------------------ helpers


sleep_tree = partial(shared_sleep_tree, dep_every=3, max_attempts=0)


async def until(predicate: Callable[[], Any], limit_s: float = WAIT_S) -> None:
    await wait_until(predicate, limit_s)


finish = partial(wait_finished, limit_s=WAIT_S)


def assert_exact(received: Sequence[int], expected: Sequence[int], label: str = "") -> None:
    duplicates = sorted(s for s, n in Counter(received).items() if n > 1)
    missing = sorted(set(expected) - set(received))
    extra = sorted(set(received) - set(expected))
    assert not duplicates, f"{label}: duplicated sequences {duplicates[:20]}"
    assert not missing, f"{label}: {len(missing)} committed events missing {missing[:20]}"
    assert not extra, f"{label}: events never committed {extra[:20]}"
    assert list(received) == list(expected), f"{label}: out of order"


def assert_resumable(follower: Follower, label: str = "") -> None:
    """No message carries an event at or below the sequence of an earlier message."""
    high = follower.request.after_sequence
    for message in follower.messages:
        for event in message.events:
            assert event.sequence > high, f"{label}: event {event.sequence} after {high}"
        assert message.sequence >= high
        high = message.sequence


class DroppingWatcher:
    """Watches a root over raw streams, dropping the connection at random points and
    resuming after the last sequence seen; checks every stream's own contract."""

    def __init__(self, client: AsyncClient, root_id: str, seed: int, p_drop: float) -> None:
        self.client = client
        self.root_id = root_id
        self.rng = random.Random(seed)
        self.p_drop = p_drop
        self.received: list[int] = []
        self.last = 0
        self.drops = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            after = self.last
            call = self.client.stub.WatchEvents(
                watch_request(root_id=self.root_id, after_sequence=after)
            )
            try:
                if self.rng.random() < self.p_drop:
                    self.drops += 1
                    continue
                while True:
                    message = await call.read()
                    assert message is not grpc.aio.EOF
                    sequences = [event.sequence for event in message.events]
                    assert all(s > after for s in sequences), (after, sequences[:5])
                    self.received.extend(sequences)
                    self.last = max(self.last, message.sequence)
                    if self.rng.random() < self.p_drop:
                        self.drops += 1
                        break
            finally:
                call.cancel()

    async def stop(self) -> None:
        await stop_tasks(self.task)


def assert_events_match_state(
    history: Sequence[dict[str, Any]], stored: dict[str, dict[str, Any]]
) -> None:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in history:
        by_task[row["task_id"]].append(row)
    assert set(by_task) == set(stored)
    for task_id, rows in by_task.items():
        assert rows[0]["type"] == "created"
        for before, after in itertools.pairwise(rows):
            if after["type"] == "status_changed":
                assert after["previous_status"] == before["status"], (before, after)
        assert rows[-1]["status"] == stored[task_id]["status"], task_id


# ------------------------------------------------------------------ drops and resumes


async def test_soak_many_watchers_dropping_and_resuming(make_server: ServerFactory) -> None:
    # 1 ms tasks: the run spreads over hundreds of commits however fast a commit is, so
    # every watcher has many messages to drop its stream between.
    server = await make_server(max_concurrency=8)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(2000, seconds=0.001))
    root = created["root"].id
    raw = [DroppingWatcher(client, root, seed, p_drop=0.05) for seed in range(8)]
    sdk_received: list[list[int]] = [[] for _ in range(4)]

    async def sdk_dropping(seed: int, into: list[int]) -> None:
        rng = random.Random(1000 + seed)
        while True:
            stream = client.watch(root_id=root, after_sequence=into[-1] if into else 0)
            try:
                async for item in stream:
                    assert isinstance(item, TaskEvent)
                    into.append(item.sequence)
                    if rng.random() < 0.02:
                        break
            finally:
                await stream.aclose()

    sdk = [asyncio.create_task(sdk_dropping(i, into)) for i, into in enumerate(sdk_received)]
    try:
        await until(lambda: all(len(w.received) >= 2001 for w in raw))
        await client.execute_task(root)
        await finish(client, root)
        expected = committed_sequences(db_of(server), root_id=root)
        await until(
            lambda: (
                all(w.last >= expected[-1] or w.task.done() for w in raw)
                and all(
                    (into and into[-1] >= expected[-1]) or t.done()
                    for into, t in zip(sdk_received, sdk, strict=True)
                )
            )
        )
    finally:
        for watcher in raw:
            await watcher.stop()
        await stop_tasks(*sdk)
    for index, watcher in enumerate(raw):
        assert watcher.drops >= 3, f"raw watcher {index} dropped only {watcher.drops} times"
        assert_exact(watcher.received, expected, f"raw watcher {index}")
    for index, received in enumerate(sdk_received):
        assert_exact(received, expected, f"sdk watcher {index}")
    await until(lambda: server.hub.subscriber_count == 0, 10)


@pytest.fixture
def slow_server_process(db_url: str) -> Iterator[ServerProcess]:
    """`taskgrove serve` as a subprocess running at most 4 attempts at once."""
    process = ServerProcess(db_url, extra_env={"TASKGROVE_MAX_CONCURRENCY": "4"})
    process.start()
    yield process
    process.stop()


async def test_soak_sdk_watch_across_repeated_kills(
    slow_server_process: ServerProcess, db_url: str
) -> None:
    server_process = slow_server_process
    port = server_process.port
    rng = random.Random(11)
    specs = sleep_tree(150, seconds=lambda i: rng.uniform(0.01, 0.06), dep_every=2, max_attempts=3)
    async with AsyncClient(server_process.address) as client:
        created = await client.create_task_tree(specs)
        root = created["root"].id
        ids = {task.id for task in created.values()}
        seen: list[TaskEvent] = []
        latest: dict[str, TaskEvent] = {}
        joined: list[Snapshot | TaskEvent] = []

        async def watcher(into: list[Any], snapshot: bool) -> None:
            async for item in client.watch(
                root_id=root, include_snapshot=snapshot, max_backoff=0.5
            ):
                into.append(item)
                if isinstance(item, TaskEvent) and into is seen:
                    latest[item.task_id] = item

        watching = asyncio.create_task(watcher(seen, False))
        late: asyncio.Task[None] | None = None
        try:
            await until(lambda: len(seen) >= len(ids))
            await client.execute_task(root)
            for kill in range(3):
                # Kill points follow the server's progress (committed events), not the
                # watcher's: a watcher lagging a busy server must not push the kills past
                # the end of the run (then 40 more events never come).
                mark = committed_count(db_url, root_id=root)
                await until(lambda m=mark: committed_count(db_url, root_id=root) >= m + 40)
                await asyncio.to_thread(server_process.stop, signal.SIGKILL)
                stored = stored_tasks(db_url, root_id=root)
                assert stored[root]["status"] not in statuses.TERMINAL, f"kill {kill} after the end"
                assert_events_match_state(committed(db_url, root_id=root), stored)
                await asyncio.to_thread(server_process.start, port)
                if kill == 0:
                    late = asyncio.create_task(watcher(joined, True))
            await until(
                lambda: (
                    set(latest) == ids
                    and all(event.status in statuses.TERMINAL for event in latest.values())
                )
            )
            expected = committed_sequences(db_url, root_id=root)
            await until(lambda: seen[-1].sequence >= expected[-1])
            # (A Snapshot taken after the end is the last item; it has a sequence too.)
            await until(lambda: joined and joined[-1].sequence >= expected[-1])
        finally:
            await stop_tasks(watching, late)

    assert_exact([event.sequence for event in seen], expected, "first watcher")
    final = stored_tasks(db_url, root_id=root)
    assert all(row["status"] in statuses.TERMINAL for row in final.values())
    assert_events_match_state(committed(db_url, root_id=root), final)
    # The watcher that joined with a snapshot after the first restart.
    snapshot = joined[0]
    assert isinstance(snapshot, Snapshot)
    events = [item for item in joined[1:] if isinstance(item, TaskEvent)]
    assert len(events) == len(joined) - 1
    assert_exact(
        [e.sequence for e in events],
        [s for s in expected if s > snapshot.sequence],
        "snapshot watcher",
    )
    state = {task.id: task.status for task in snapshot.tasks}
    for event in events:
        state[event.task_id] = event.status
    assert state == {task_id: row["status"] for task_id, row in final.items()}


# ------------------------------------------------------------------ fan-out


async def test_soak_mixed_filters_fan_out(make_server: ServerFactory) -> None:
    server = await make_server(max_concurrency=32)
    client = make_server.client(server)
    trees = {}
    for user in ("ann", "ben", "cat"):
        for index in range(2):
            trees[(user, index)] = await client.create_task_tree(sleep_tree(300, user_id=user))
    rng = random.Random(5)
    followers: dict[str, list[tuple[Follower, dict[str, str]]]] = defaultdict(list)

    def follow(kind: str, **where: str) -> None:
        request = watch_request(**where)
        followers[kind].append((Follower(client.stub, request), where))

    for created in trees.values():
        for _ in range(5):
            follow("root", root_id=created["root"].id)
        follow("root+user", root_id=created["root"].id, user_id=created["root"].user_id)
    for user in ("ann", "ben", "cat", "nobody"):
        for _ in range(8):
            follow("user", user_id=user)
    all_tasks = [task for created in trees.values() for task in created.values()]
    for task in rng.sample(all_tasks, 30):
        follow("task", task_id=task.id)
    for _ in range(20):
        follow("everything")
    everyone = [f for group in followers.values() for f, _ in group]
    try:
        await until(lambda: server.hub.subscriber_count == len(everyone))
        await asyncio.gather(
            *(client.execute_task(created["root"].id) for created in trees.values())
        )
        for created in trees.values():
            await finish(client, created["root"].id)
        newest = committed_sequences(db_of(server))[-1]
        for group in followers.values():
            for follower, where in group:
                expected = committed_sequences(db_of(server), **where)
                if expected:
                    await until(lambda f=follower, e=expected: f.last >= e[-1] or f.ended.is_set())
                else:
                    await asyncio.sleep(0)
    finally:
        for follower in everyone:
            await follower.close()
    assert newest > 0
    for kind, group in followers.items():
        for follower, where in group:
            assert follower.error is None, (kind, where, follower.error)
            assert_exact(follower.sequences, committed_sequences(db_of(server), **where), kind)
            assert_resumable(follower, kind)


# ------------------------------------------------------------------ slow and fast readers


async def test_soak_slow_readers_do_not_disturb_others(make_server: ServerFactory) -> None:
    server = await make_server(watcher_buffer_events=100, max_concurrency=4)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(1000))
    root = created["root"].id
    slow_channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=TINY_WINDOW)
    slow_stub = task_service_pb2_grpc.TaskServiceStub(slow_channel)
    slow_calls = [slow_stub.WatchEvents(watch_request(root_id=root)) for _ in range(10)]
    try:
        firsts = []
        for call in slow_calls:
            async with asyncio.timeout(WAIT_S):
                firsts.append(await call.read())
        readers = [Follower(client.stub, watch_request(root_id=root)) for _ in range(20)]
        sdk_received: list[list[int]] = [[] for _ in range(10)]

        async def sdk_watch(into: list[int]) -> None:
            async for item in client.watch(root_id=root, max_backoff=0.2):
                assert isinstance(item, TaskEvent)
                into.append(item.sequence)

        sdk = [asyncio.create_task(sdk_watch(into)) for into in sdk_received]
        try:
            await until(lambda: server.hub.subscriber_count >= 40)
            await client.execute_task(root)
            await finish(client, root)
            expected = committed_sequences(db_of(server), root_id=root)
            await until(
                lambda: (
                    all(f.last >= expected[-1] or f.ended.is_set() for f in readers)
                    and all(into and into[-1] >= expected[-1] for into in sdk_received)
                )
            )
        finally:
            for follower in readers:
                await follower.close()
            await stop_tasks(*sdk)
        for index, into in enumerate(sdk_received):
            assert_exact(into, expected, f"sdk watcher {index}")
        for index, follower in enumerate(readers):
            # A raw reader may be cut off if it lagged, but only that way and gap-free.
            if follower.error is not None:
                assert follower.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert reason_of(follower.error) == "SUBSCRIBER_TOO_SLOW"
                assert follower.sequences == expected[: len(follower.sequences)]
            else:
                assert_exact(follower.sequences, expected, f"reader {index}")

        for first, call in zip(firsts, slow_calls, strict=True):
            got = [event.sequence for event in first.events]
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async with asyncio.timeout(WAIT_S):
                    while True:
                        message = await call.read()
                        assert message is not grpc.aio.EOF
                        got.extend(event.sequence for event in message.events)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(raised.value) == "SUBSCRIBER_TOO_SLOW"
            assert got == expected[: len(got)] and len(got) < len(expected)
    finally:
        await slow_channel.close()
    await until(lambda: server.hub.subscriber_count == 0, 10)


# ------------------------------------------------------------------ snapshots mid-run


async def test_soak_snapshot_watchers_joining_mid_run(make_server: ServerFactory) -> None:
    server = await make_server(max_concurrency=4)
    client = make_server.client(server)
    created = await client.create_task_tree(sleep_tree(1500, dep_every=4))
    root = created["root"].id
    await client.execute_task(root)
    joined: list[Follower] = []
    try:
        for _ in range(30):
            joined.append(Follower(client.stub, watch_request(root_id=root, include_snapshot=True)))
            await asyncio.sleep(0.02)
        await finish(client, root)
        expected_all = committed_sequences(db_of(server), root_id=root)
        for follower in joined:
            await until(lambda f=follower: f.last >= expected_all[-1] or f.ended.is_set())
    finally:
        for follower in joined:
            await follower.close()
    history = committed(db_of(server), root_id=root)
    final = {
        task_id: row["status"] for task_id, row in stored_tasks(db_of(server), root_id=root).items()
    }
    mid_run = 0
    for index, follower in enumerate(joined):
        assert follower.error is None
        first = follower.messages[0]
        at = first.sequence
        state = {task.id: wire.status_from_proto(task.status) for task in first.snapshot}
        reflected: dict[str, str] = {}
        for row in history:
            if row["sequence"] <= at:
                reflected[row["task_id"]] = row["status"]
        assert state == reflected, f"snapshot {index} differs from the events up to {at}"
        mid_run += any(status not in statuses.TERMINAL for status in state.values())
        assert_exact(
            follower.sequences, [s for s in expected_all if s > at], f"snapshot watcher {index}"
        )
        assert_resumable(follower)
        for event in follower.events:
            state[event.task_id] = wire.status_from_proto(event.status)
        assert state == final
    assert mid_run > 0, "no snapshot was taken mid-run: the test exercised nothing live"


# ------------------------------------------------------------------ heartbeats racing events


@pytest.mark.parametrize("executor", ["pulse", "sleep_executor"])
async def test_soak_heartbeats_racing_live_events(
    make_server: ServerFactory, executor: str
) -> None:
    # Heartbeats as often as events: the race between them is the point.
    server = await make_server(registry=pulse_registry(), min_heartbeat_seconds=0.01)
    client = make_server.client(server)
    heartbeat_s = 0.01
    rng = random.Random(17)
    specs: list[dict[str, Any]] = [{"id": "root", "name": "root", "user_id": "u"}]
    for index in range(150):
        if executor == "pulse":
            inputs: dict[str, Any] = {"yields": index % 25, "hold_s": 2 * heartbeat_s}
        else:
            inputs = {"seconds": rng.uniform(0, 0.03)}
        specs.append(
            {
                "id": f"c{index}",
                "name": f"c{index}",
                "executor": executor,
                "parent_id": "root",
                "inputs": inputs,
                "dependencies": [f"c{index - 1}"] if index else [],
            }
        )
    created = await client.create_task_tree(specs)
    root = created["root"].id
    raw = [
        Follower(
            client.stub,
            watch_request(root_id=root, heartbeat_interval=heartbeat_s * (1 + (i % 3) * 0.1)),
        )
        for i in range(30)
    ]
    sdk_received: list[list[int]] = [[] for _ in range(20)]

    async def sdk_watch(into: list[int]) -> None:
        async for item in client.watch(root_id=root, heartbeat_interval=heartbeat_s):
            assert isinstance(item, TaskEvent)
            into.append(item.sequence)

    sdk = [asyncio.create_task(sdk_watch(into)) for into in sdk_received]
    try:
        await until(lambda: server.hub.subscriber_count == 50)
        await client.execute_task(root)
        await finish(client, root)
        expected = committed_sequences(db_of(server), root_id=root)
        await until(lambda: all(f.last >= expected[-1] for f in raw))
        await until(lambda: all(f.messages[-1].heartbeat for f in raw))
        await asyncio.sleep(10 * heartbeat_s)
    finally:
        for follower in raw:
            await follower.close()
        await stop_tasks(*sdk)
    for index, follower in enumerate(raw):
        assert_exact(follower.sequences, expected, f"raw watcher {index}")
        assert_resumable(follower, f"raw watcher {index}")
    for index, received in enumerate(sdk_received):
        assert_exact(received, expected, f"sdk watcher {index}")


# ------------------------------------------------------------------ pruning while running


async def test_soak_pruning_while_trees_run(make_server: ServerFactory) -> None:
    # Finished trees are pruned every 50 ms while others run. Sequences are consecutive
    # server-wide, so a watcher of everything must see exactly 1..N, whatever was pruned.
    server = await make_server(
        event_retention_seconds=0, prune_interval_seconds=0.05, max_concurrency=8
    )
    client = make_server.client(server)
    everything = Follower(client.stub, watch_request(heartbeat_interval=0.05))
    sdk_received: list[int] = []

    async def sdk_watch() -> None:
        async for item in client.watch(user_id="u"):
            assert isinstance(item, TaskEvent)
            sdk_received.append(item.sequence)

    sdk = asyncio.create_task(sdk_watch())
    roots = []
    try:
        await until(lambda: server.hub.subscriber_count == 2)
        for wave in range(6):
            batch = [
                await client.create_task_tree(sleep_tree(100, seconds=0.005 * (wave % 2)))
                for _ in range(3)
            ]
            await asyncio.gather(*(client.execute_task(c["root"].id) for c in batch))
            roots.extend(c["root"].id for c in batch)
        for root in roots:
            await finish(client, root)
        await until(lambda: committed_sequences(db_of(server)) == [])  # everything pruned
        newest = server.hub.last_sequence
        await until(lambda: everything.last >= newest and sdk_received[-1:] == [newest])
    finally:
        await everything.close()
        await stop_tasks(sdk)
    assert everything.error is None
    assert everything.sequences == list(range(1, newest + 1))
    assert_resumable(everything)
    assert sdk_received == list(range(1, newest + 1))
