"""The core flows on PostgreSQL (DESIGN 7), through a real in-process server on a fresh
database per test. Skipped unless TASKGROVE_TEST_PG_URL names a PostgreSQL server, e.g.
postgresql+asyncpg://taskgrove:taskgrove@127.0.0.1:5432 (see scripts/start-postgres.sh).

What the database holds is checked directly with asyncpg where the API alone cannot show
it: nothing written after a rejected request, and the `task_events` table as the truth a
WatchEvents stream must match (no gap, no duplicate).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from conftest import pg_dsn
from support.trees import ROOT, group, ids, sleeper
from support.waiting import WAIT_S, wait_finished
from support.waiting import until_task as until
from taskgrove import (
    AsyncClient,
    InvalidArgumentError,
    NotFoundError,
    Snapshot,
    Task,
    TaskEvent,
    reasons,
    statuses,
)
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.executors import (
    ExecutionContext,
    Executor,
    ExecutorError,
    ExecutorRegistry,
)

if TYPE_CHECKING:
    from conftest import ServerFactory


# ---------------------------------------------------------------------------- helpers


async def by_name(client: AsyncClient, root_id: str) -> dict[str, Task]:
    return {task.name: task for task in await client.get_task_tree(root_id)}


async def fetch(db_url: str, query: str, *params: Any) -> list[asyncpg.Record]:
    """Run one query on the test database, outside the server."""
    connection = await asyncpg.connect(pg_dsn(db_url), timeout=10)
    try:
        return list(await connection.fetch(query, *params))
    finally:
        await connection.close()


class Controls:
    """What the test executors do, set by the test while the server runs in-process."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        """Task names `flaky` fails while they are in here."""
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.attempts: dict[str, list[int]] = defaultdict(list)

    def registry(self) -> ExecutorRegistry:
        registry = ExecutorRegistry.default(load_entry_points=False)

        async def flaky(context: ExecutionContext) -> Any:
            self.attempts[context.name].append(context.attempt)
            if context.name in self.failing:
                raise ExecutorError("failing on request", reason="FLAKY")
            return {"attempt": context.attempt}

        async def gate(context: ExecutionContext) -> Any:
            """Reports `progress` (if given), then waits for the gate named `gate`."""
            if "progress" in context.inputs:
                context.report_progress(float(context.inputs["progress"]), "part way")
            async with asyncio.timeout(WAIT_S):
                await self.gates[str(context.inputs["gate"])].wait()
            return {"gate": context.inputs["gate"]}

        async def chatty(context: ExecutionContext) -> Any:
            for i in range(int(context.inputs["lines"])):
                context.log(f"line {i + 1}")
            return None

        registry.register(Executor(id="flaky", run=flaky))
        registry.register(Executor(id="gate", run=gate))
        registry.register(Executor(id="chatty", run=chatty))
        return registry


async def pg_lab(
    make_server: ServerFactory, pg_db_url: str
) -> tuple[TaskgroveServer, AsyncClient, Controls]:
    controls = Controls()
    server = await make_server(db_url=pg_db_url, registry=controls.registry())
    return server, make_server.client(server), controls


@pytest.fixture
async def watcher_client(pg_server: TaskgroveServer) -> AsyncIterator[AsyncClient]:
    """A second connection, for a watch stream next to `pg_client`'s calls."""
    async with AsyncClient(f"127.0.0.1:{pg_server.port}") as connected:
        yield connected


# ---------------------------------------------------------------------------- tests


async def test_the_server_really_runs_on_postgresql(pg_server: TaskgroveServer) -> None:
    assert pg_server.config.db_url.startswith("postgresql+asyncpg://")
    rows = await fetch(pg_server.config.db_url, "SELECT version_num FROM alembic_version")
    assert len(rows) == 1


async def test_dependencies_and_failure_cascade(
    pg_client: AsyncClient, pg_server: TaskgroveServer
) -> None:
    created = await pg_client.create_task_tree(
        [
            ROOT,
            sleeper("a"),
            sleeper("b", dependencies=["a"]),
            sleeper("boom", inputs={"fail": True}),
            sleeper("c", dependencies=["boom"]),
            group("sub"),
            sleeper("d", parent="sub", dependencies=["c"]),
            sleeper("optional", dependencies=[{"id": "boom", "required": False}]),
            sleeper("after_ab", dependencies=["a", "b"]),
        ],
        execute=True,
    )
    tid = ids(created)
    root = await wait_finished(pg_client, tid["root"])
    assert root.status == statuses.FAILED
    tree = await by_name(pg_client, tid["root"])
    assert all(task.status in statuses.TERMINAL for task in tree.values())
    for name in ("a", "b", "after_ab", "optional"):
        assert tree[name].status == statuses.COMPLETED, name
    assert tree["boom"].status == statuses.FAILED
    assert tree["boom"].error is not None and tree["boom"].error.reason == "EXECUTOR_ERROR"
    for name, dependency in (("c", "boom"), ("d", "c")):
        task = tree[name]
        assert task.status == statuses.FAILED, name
        assert task.error is not None and task.error.reason == "DEPENDENCY_FAILED", name
        assert task.error.details["dependency_id"] == tid[dependency]
        assert task.attempt == 0, name  # never ran
    assert tree["sub"].status == statuses.FAILED
    # Execution order followed the dependencies.
    assert tree["a"].end_time is not None and tree["b"].start_time is not None
    assert tree["a"].end_time <= tree["b"].start_time
    assert tree["b"].end_time is not None and tree["after_ab"].start_time is not None
    assert tree["b"].end_time <= tree["after_ab"].start_time
    # The stored rows agree with the API.
    rows = await fetch(
        pg_server.config.db_url, "SELECT id, status FROM tasks WHERE root_id = $1", tid["root"]
    )
    assert {row["id"]: row["status"] for row in rows} == {
        task.id: task.status for task in tree.values()
    }


async def test_a_rejected_tree_writes_nothing(
    pg_client: AsyncClient, pg_server: TaskgroveServer
) -> None:
    db_url = pg_server.config.db_url
    valid = [ROOT, *(sleeper(f"t{i}") for i in range(50))]
    rejected = [
        # An input the executor's schema refuses, after 50 valid tasks.
        [*valid, sleeper("bad", inputs={"seconds": -1})],
        # A dependency cycle.
        [*valid, sleeper("x", dependencies=["y"]), sleeper("y", dependencies=["x"])],
        # A second top task.
        [*valid, group("second_top", None)],
        # A parent that does not exist (NOT_FOUND).
        [*valid, sleeper("orphan", parent="nowhere")],
    ]
    for tasks in rejected:
        with pytest.raises((InvalidArgumentError, NotFoundError)):
            await pg_client.create_task_tree(tasks, execute=True, request_id="rejected")
    assert [task async for task in pg_client.list_tasks()] == []
    for table in ("tasks", "task_events", "task_dependencies", "idempotency_keys"):
        rows = await fetch(db_url, f"SELECT count(*) AS n FROM {table}")
        assert rows[0]["n"] == 0, table
    # The same request id still works for a valid request afterwards.
    created = await pg_client.create_task_tree(valid, execute=True, request_id="rejected")
    assert (await wait_finished(pg_client, created["root"].id)).status == statuses.COMPLETED


async def test_watch_replay_then_live_matches_the_event_table(
    pg_client: AsyncClient, watcher_client: AsyncClient, pg_server: TaskgroveServer
) -> None:
    db_url = pg_server.config.db_url
    created = await pg_client.create_task_tree(
        [
            ROOT,
            group("first"),
            *(sleeper(f"f{i}", parent="first") for i in range(30)),
            group("second"),
            *(sleeper(f"s{i}", 0.01, parent="second") for i in range(30)),
            sleeper("last", dependencies=["first", "second"]),
        ]
    )
    tid = ids(created)
    await pg_client.execute_task(tid["first"])
    await until(pg_client, tid["first"], lambda t: t.is_finished)
    history_rows = await fetch(
        db_url, "SELECT sequence FROM task_events WHERE root_id = $1", tid["root"]
    )
    mid = sorted(row["sequence"] for row in history_rows)[len(history_rows) // 2]

    async def collect(started: asyncio.Event, **kwargs: Any) -> list[TaskEvent | Snapshot]:
        seen: list[TaskEvent | Snapshot] = []
        async for item in watcher_client.watch(root_id=tid["root"], **kwargs):
            seen.append(item)
            started.set()
            if (
                isinstance(item, TaskEvent)
                and item.task_id == tid["root"]
                and item.status in statuses.TERMINAL
            ):
                return seen
        return seen

    async with asyncio.timeout(WAIT_S):
        # Three watchers: full replay, resumed half way, and from a snapshot. Each has
        # received something (so it is subscribed) before the second half runs live.
        started = [asyncio.Event() for _ in range(3)]
        full = asyncio.create_task(collect(started[0], after_sequence=0))
        resumed = asyncio.create_task(collect(started[1], after_sequence=mid))
        snapshot = asyncio.create_task(collect(started[2], include_snapshot=True))
        for event in started:
            await event.wait()
        await pg_client.execute_task(tid["root"])
        full_seen, resumed_seen, snapshot_seen = await asyncio.gather(full, resumed, snapshot)

    rows = await fetch(
        db_url,
        "SELECT sequence, task_id, type, status FROM task_events "
        "WHERE root_id = $1 ORDER BY sequence",
        tid["root"],
    )
    table = [(row["sequence"], row["task_id"], row["status"]) for row in rows]
    assert len({seq for seq, _, _ in table}) == len(table)

    def triples(seen: list[TaskEvent | Snapshot]) -> list[tuple[int, str, str]]:
        return [(e.sequence, e.task_id, e.status) for e in seen if isinstance(e, TaskEvent)]

    # Everything, in order, once each: exactly the table's rows for this tree.
    assert triples(full_seen) == table
    assert triples(resumed_seen) == [row for row in table if row[0] > mid]
    first = snapshot_seen[0]
    assert isinstance(first, Snapshot)
    assert {task.id for task in first.tasks} == set(tid.values())
    assert triples(snapshot_seen) == [row for row in table if row[0] > first.sequence]
    # The second half really ran live: the snapshot saw it pending, and every watcher got
    # its completions.
    assert {task.status for task in first.tasks if task.name.startswith("s")} == {statuses.PENDING}
    for seen in (full_seen, resumed_seen, snapshot_seen):
        assert {tid[f"s{i}"] for i in range(30)} <= {
            task_id for _, task_id, status in triples(seen) if status == statuses.COMPLETED
        }
    assert (await pg_client.get_task(tid["root"])).status == statuses.COMPLETED


async def test_cancel_of_a_running_sleep_subtree(pg_client: AsyncClient) -> None:
    created = await pg_client.create_task_tree(
        [
            ROOT,
            sleeper("quick"),
            group("g"),
            sleeper("long_a", 30, parent="g"),
            sleeper("long_b", 30, parent="g"),
            sleeper("after_a", parent="g", dependencies=["long_a"]),
            sleeper("outside", dependencies=[{"id": "g", "required": False}]),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(pg_client, tid["quick"], lambda t: t.status == statuses.COMPLETED)
    for name in ("long_a", "long_b"):
        await until(pg_client, tid[name], lambda t: t.status == statuses.IN_PROGRESS)

    cancelled = await pg_client.cancel_task(tid["g"])

    assert sorted(cancelled) == sorted(tid[n] for n in ("long_a", "long_b", "after_a"))
    async with asyncio.timeout(5):  # not the 30 s of the sleepers
        root = await pg_client.wait(tid["root"])
    assert root.status == statuses.CANCELLED
    tree = await by_name(pg_client, tid["root"])
    for name in ("long_a", "long_b", "after_a"):
        assert tree[name].status == statuses.CANCELLED, name
        assert tree[name].error is not None and tree[name].error.reason == "CANCELLED"
    assert tree["g"].status == statuses.CANCELLED
    assert tree["quick"].status == statuses.COMPLETED
    assert tree["outside"].status == statuses.COMPLETED  # optional dependency on g
    # Idempotent: a second cancel changes nothing.
    assert await pg_client.cancel_task(tid["g"]) == []


async def test_retry_reruns_the_failure_and_its_dependents(
    make_server: ServerFactory, pg_db_url: str
) -> None:
    _, client, controls = await pg_lab(make_server, pg_db_url)
    controls.failing.add("flaky_step")
    created = await client.create_task_tree(
        [
            ROOT,
            {"id": "flaky_step", "name": "flaky_step", "executor": "flaky", "parent_id": "root"},
            sleeper("after", dependencies=["flaky_step"]),
            sleeper("fine"),
        ],
        execute=True,
    )
    tid = ids(created)
    root = await wait_finished(client, tid["root"])
    assert root.status == statuses.FAILED
    tree = await by_name(client, tid["root"])
    assert tree["flaky_step"].error is not None and tree["flaky_step"].error.reason == "FLAKY"
    assert tree["after"].error is not None
    assert tree["after"].error.reason == "DEPENDENCY_FAILED"
    fine_before = tree["fine"]

    controls.failing.clear()
    retried = await client.retry_task(tid["flaky_step"])

    assert sorted(retried) == sorted([tid["flaky_step"], tid["after"]])
    root = await wait_finished(client, tid["root"])
    assert root.status == statuses.COMPLETED
    tree = await by_name(client, tid["root"])
    assert tree["flaky_step"].status == statuses.COMPLETED
    assert tree["after"].status == statuses.COMPLETED
    assert tree["fine"] == fine_before  # untouched
    assert len(controls.attempts["flaky_step"]) == 2


async def test_restart_on_the_same_database(make_server: ServerFactory, pg_db_url: str) -> None:
    first = await make_server(db_url=pg_db_url)
    client = make_server.client(first)
    done = await client.create_task_tree(
        [
            {**ROOT, "user_id": "alice"},
            sleeper("x", inputs={"result": {"k": [1, "two", None]}}, priority=0),
            sleeper("y", dependencies=["x"], max_attempts=3, timeout=30),
        ],
        execute=True,
    )
    await wait_finished(client, done["root"].id)
    before = {task.id: task for task in await client.get_task_tree(done["root"].id)}
    running = await client.create_task_tree(
        [ROOT, *(sleeper(f"c{i}", 0.3, dependencies=[f"c{i - 1}"] if i else []) for i in range(8))],
        execute=True,
    )
    rid = ids(running)
    await until(client, rid["c1"], lambda t: t.status == statuses.IN_PROGRESS)
    await make_server.stop(first, grace=1)

    second = await make_server(db_url=pg_db_url)
    client = make_server.client(second)
    after = {task.id: task for task in await client.get_task_tree(done["root"].id)}
    assert after == before
    root = await wait_finished(client, rid["root"])
    assert root.status == statuses.COMPLETED
    tree = await by_name(client, rid["root"])
    for index in range(8):
        task = tree[f"c{index}"]
        assert task.status == statuses.COMPLETED, index
        assert task.attempt == 1, index  # an interrupted attempt is given back
    for index in range(1, 8):
        previous, task = tree[f"c{index - 1}"], tree[f"c{index}"]
        assert previous.end_time is not None and task.start_time is not None
        assert previous.end_time <= task.start_time


async def test_group_progress_is_the_mean_of_its_subtree(
    make_server: ServerFactory, pg_db_url: str
) -> None:
    _, client, controls = await pg_lab(make_server, pg_db_url)

    def gated(name: str, parent: str, **inputs: Any) -> dict[str, Any]:
        return {"id": name, "name": name, "executor": "gate", "parent_id": parent, "inputs": inputs}

    created = await client.create_task_tree(
        [
            ROOT,
            group("g"),
            gated("quarter", "g", gate="release", progress=0.25),
            gated("half", "g", gate="release", progress=0.5),
            sleeper("done", parent="g"),
            sleeper("failed", inputs={"fail": True}),
        ],
        execute=True,
    )
    tid = ids(created)
    await until(client, tid["quarter"], lambda t: t.progress == pytest.approx(0.25))
    await until(client, tid["half"], lambda t: t.progress == pytest.approx(0.5))
    await until(client, tid["done"], lambda t: t.status == statuses.COMPLETED)
    await until(client, tid["failed"], lambda t: t.status == statuses.FAILED)
    g = await client.get_task(tid["g"])
    assert g.progress == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    assert g.status == statuses.IN_PROGRESS
    root = await client.get_task(tid["root"])
    assert root.progress == pytest.approx((0.25 + 0.5 + 1.0 + 0.0) / 4)
    tree = await by_name(client, tid["root"])
    assert tree["g"].progress == pytest.approx(g.progress)
    listed = {task.id: task async for task in client.list_tasks(parent_id=tid["root"])}
    assert listed[tid["g"]].progress == pytest.approx(g.progress)

    controls.gates["release"].set()
    root = await wait_finished(client, tid["root"])
    assert root.status == statuses.FAILED
    assert root.progress == pytest.approx(3 / 4)
    assert (await client.get_task(tid["g"])).progress == 1.0


async def test_list_tasks_paging(pg_client: AsyncClient, pg_server: TaskgroveServer) -> None:
    created = await pg_client.create_task_tree([ROOT, *(sleeper(f"t{i}") for i in range(19))])
    singles = [
        (await pg_client.create_task(name=f"single{i}", user_id="odd" if i % 2 else "even")).id
        for i in range(11)
    ]
    expected = [task.id for task in created.values()] + singles
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = await pg_client.list_tasks_page(page_size=7, page_token=token)
        pages += 1
        seen.extend(task.id for task in page)
        if not token:
            break
        assert len(page) == 7
    assert pages == 5  # 31 tasks: 7 + 7 + 7 + 7 + 3
    assert seen == expected
    # The order is insertion order, as stored.
    rows = await fetch(pg_server.config.db_url, "SELECT id FROM tasks ORDER BY seq")
    assert [row["id"] for row in rows] == expected
    # Filters page too, and the token stays within them.
    odd: list[str] = []
    page, token = await pg_client.list_tasks_page(user_id="odd", page_size=2)
    odd.extend(task.id for task in page)
    while token:
        page, token = await pg_client.list_tasks_page(user_id="odd", page_size=2, page_token=token)
        assert all(task.user_id == "odd" for task in page)
        odd.extend(task.id for task in page)
    assert odd == singles[1::2]
    roots = [task.id async for task in pg_client.list_tasks(roots_only=True, page_size=2)]
    assert roots == [created["root"].id, *singles]
    children = [
        task.id async for task in pg_client.list_tasks(parent_id=created["root"].id, page_size=4)
    ]
    assert children == [created[f"t{i}"].id for i in range(19)]
    pending = [task.id async for task in pg_client.list_tasks(statuses=[statuses.PENDING])]
    assert pending == expected


# ---------------------------------------------------------------------------- write path


async def test_values_postgresql_would_refuse_are_bounded_before_the_write(
    pg_client: AsyncClient, pg_server: TaskgroveServer
) -> None:
    """A 25-day timeout and backoff fit (BIGINT milliseconds); what the columns cannot
    hold (a user_id over 255 characters, a NUL) is refused by validation, not by the
    database, and nothing is written."""
    long = timedelta(days=25)
    task = await pg_client.create_task(
        name="sleep_executor", user_id="u", timeout=long, retry_backoff=long
    )
    assert (task.timeout, task.retry_backoff) == (long, long)
    assert (await pg_client.get_task(task.id)).timeout == long
    for fields, reason in (
        ({"name": "sleep_executor", "user_id": "u" * 256}, reasons.INVALID_USER_ID),
        ({"name": "a\x00b"}, reasons.INVALID_STRING),
        ({"name": "sleep_executor", "user_id": "u\x00"}, reasons.INVALID_USER_ID),
    ):
        with pytest.raises(InvalidArgumentError) as refused:
            await pg_client.create_task(**fields)
        assert refused.value.reason == reason
    rows = await fetch(pg_server.config.db_url, "SELECT id FROM tasks")
    assert [row["id"] for row in rows] == [task.id]
    assert pg_server.store.writer.available


async def test_a_refused_write_fails_only_its_request_on_postgresql(
    pg_client: AsyncClient, pg_server: TaskgroveServer
) -> None:
    """A trigger refuses tasks named "poison" while a tree runs and others create tasks:
    only the poison requests fail (WRITE_REFUSED); the tree completes."""
    await fetch(
        pg_server.config.db_url,
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'poison refused'; END IF; "
        "RETURN NEW; END $$",
    )
    await fetch(
        pg_server.config.db_url,
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    )
    tree = await pg_client.create_task_tree(
        [ROOT, *(sleeper(f"s{i}", 0.005) for i in range(60))], execute=True
    )

    async def poison() -> Exception | Task:
        try:
            return await pg_client.create_task(name="poison")
        except Exception as error:
            return error

    outcomes = await asyncio.gather(
        *(pg_client.create_task(name=f"fine-{i}") for i in range(20)),
        *(poison() for _ in range(5)),
    )
    fine, refused = outcomes[:20], outcomes[20:]
    assert all(isinstance(task, Task) for task in fine), fine
    assert all(
        isinstance(error, InvalidArgumentError) and error.reason == reasons.WRITE_REFUSED
        for error in refused
    ), refused
    done = await wait_finished(pg_client, tree["root"].id, WAIT_S)
    assert done.status == statuses.COMPLETED
    names = {row["name"] for row in await fetch(pg_server.config.db_url, "SELECT name FROM tasks")}
    assert "poison" not in names and {f"fine-{i}" for i in range(20)} <= names
    assert pg_server.engine.running == 0


async def test_a_tasks_log_is_stored_and_capped_on_postgresql(
    make_server: ServerFactory, pg_db_url: str
) -> None:
    _, client, _ = await pg_lab(make_server, pg_db_url)
    task = await client.create_task(name="c", executor="chatty", inputs={"lines": 1_200})
    await client.execute_task(task.id)
    async with asyncio.timeout(WAIT_S):
        await client.wait(task.id)
    lines = [line async for line in client.task_logs(task.id)]
    assert [line.text for line in lines] == [f"line {i}" for i in range(201, 1_201)]
    assert lines[0].cut_before == 200
    rows = await fetch(
        pg_db_url,
        "SELECT min(sequence), max(sequence), count(*) FROM task_logs WHERE task_id = $1",
        task.id,
    )
    assert tuple(rows[0]) == (201, 1_200, 1_000)
