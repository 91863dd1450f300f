"""The engine and the use-cases over the in-memory store: no database, no sockets.

Readiness, failure and cancel cascades, priority order, progress aggregation, and what the
engine does when storage fails (transiently, or by refusing a write).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.waiting import until
from taskgrove.domain import reasons, statuses
from taskgrove_server.engine import Engine
from taskgrove_server.engine.runner import CLAIM_WINDOW
from taskgrove_server.errors import ServiceError
from taskgrove_server.events.event import STATUS_CHANGED, Event
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry
from taskgrove_server.executors.builtin import BUILTIN_EXECUTORS
from taskgrove_server.identity import ANONYMOUS
from taskgrove_server.service.specs import TaskSpec
from taskgrove_server.service.tasks import Tasks
from taskgrove_server.storage.memory import MemoryStore, TransientStorageError
from taskgrove_server.storage.reads import ListFilter
from taskgrove_server.storage.records import TaskRow
from taskgrove_server.storage.store import TaskStore, memory_store
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import (
    Applied,
    InsertTasks,
    MarkExecutionRequested,
    UpdateState,
    Write,
)

GATE = "gate_executor"


@dataclass
class Gates:
    """An executor that waits until a test opens the gate of its task's name."""

    started: list[str] = field(default_factory=list)
    opened: dict[str, asyncio.Event] = field(default_factory=dict)

    def gate(self, name: str) -> asyncio.Event:
        return self.opened.setdefault(name, asyncio.Event())

    async def run(self, context: ExecutionContext) -> Any:
        self.started.append(context.name)
        context.report_progress(0.5, "half way")
        await self.gate(context.name).wait()
        if context.inputs.get("fail"):
            raise RuntimeError(f"{context.name} failed on request")
        return {"name": context.name}


@dataclass
class Lab:
    memory: MemoryStore
    writer: Writer
    engine: Engine
    tasks: Tasks
    gates: Gates
    published: list[Event]

    async def tree(self, *specs: TaskSpec, execute: bool = True) -> dict[str, TaskRow]:
        """Create (and execute) a tree; its rows by ref."""
        created = await self.tasks.create_tree(list(specs), ANONYMOUS, execute=execute)
        by_id = {row.id: row for row in created.rows}
        return {ref: by_id[task_id] for ref, task_id in created.ids.items()}

    def status(self, row: TaskRow) -> str:
        """As stored."""
        return self.memory.tasks[row.id].status

    async def until_finished(self, *rows: TaskRow) -> None:
        await until(lambda: all(self.status(row) in statuses.TERMINAL for row in rows), 5)

    async def until_started(self, *names: str) -> None:
        await until(lambda: all(name in self.gates.started for name in names), 5)

    def statuses_published(self, row: TaskRow) -> list[str]:
        return [
            e.status for e in self.published if e.task_id == row.id and e.type == STATUS_CHANGED
        ]


def spec(
    ref: str,
    *,
    parent: str | None = None,
    executor: str = GATE,
    deps: tuple[str | tuple[str, bool], ...] = (),
    priority: int | None = None,
    **inputs: Any,
) -> TaskSpec:
    return TaskSpec(
        ref=ref,
        field=ref,
        name=ref,
        parent_id=parent,
        user_id="",
        executor=executor,
        priority=priority,
        dependencies=[(d, True) if isinstance(d, str) else d for d in deps],
        inputs=inputs,
        params={},
        max_attempts=inputs.pop("max_attempts", 0) if "max_attempts" in inputs else 0,
        retry_backoff_ms=1,
        timeout_ms=None,
    )


def group(ref: str, parent: str | None = None) -> TaskSpec:
    return spec(ref, parent=parent, executor="")


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with make_lab() as made:
        yield made


class make_lab:
    def __init__(self, max_concurrency: int = 16, max_tree_size: int = 1000) -> None:
        self.max_concurrency = max_concurrency
        self.max_tree_size = max_tree_size

    async def __aenter__(self) -> Lab:
        published: list[Event] = []
        store, memory = memory_store(published.extend)
        gates = Gates()
        registry = ExecutorRegistry([*BUILTIN_EXECUTORS, Executor(GATE, gates.run)])
        engine = Engine(store, registry, max_concurrency=self.max_concurrency)
        await store.writer.start()
        await engine.start()
        tasks = Tasks(store, engine, registry, max_tree_size=self.max_tree_size)
        self.lab = Lab(memory, store.writer, engine, tasks, gates, published)
        self.store = store
        return self.lab

    async def __aexit__(self, *exc: object) -> None:
        for gate in self.lab.gates.opened.values():
            gate.set()
        await self.lab.engine.close()
        await self.store.writer.close()


# ---------------------------------------------------------------------- readiness


async def test_a_task_waits_for_its_dependencies(lab: Lab) -> None:
    t = await lab.tree(
        group("root"), spec("a", parent="root"), spec("b", parent="root", deps=("a",))
    )
    await lab.until_started("a")
    assert lab.gates.started == ["a"]  # b waits for a
    assert lab.status(t["b"]) == statuses.PENDING
    lab.gates.gate("a").set()
    await lab.until_started("b")
    lab.gates.gate("b").set()
    await lab.until_finished(t["root"])
    assert lab.status(t["root"]) == statuses.COMPLETED
    assert lab.gates.started == ["a", "b"]


async def test_an_optional_dependency_is_waited_for_but_never_blocks(lab: Lab) -> None:
    t = await lab.tree(
        group("root"),
        spec("a", parent="root", fail=True),
        spec("b", parent="root", deps=(("a", False),)),
    )
    lab.gates.gate("a").set()
    lab.gates.gate("b").set()
    await lab.until_finished(t["root"])
    assert lab.status(t["a"]) == statuses.FAILED
    assert lab.status(t["b"]) == statuses.COMPLETED
    assert lab.status(t["root"]) == statuses.FAILED  # a group fails if any task did


# ---------------------------------------------------------------------- cascades


async def test_a_failure_cascades_through_required_dependencies(lab: Lab) -> None:
    t = await lab.tree(
        group("root"),
        spec("a", parent="root", fail=True),
        spec("b", parent="root", deps=("a",)),
        spec("c", parent="root", deps=("b",)),
    )
    lab.gates.gate("a").set()
    await lab.until_finished(t["root"])
    b, c = await lab.tasks.get(t["b"].id, ANONYMOUS), await lab.tasks.get(t["c"].id, ANONYMOUS)
    assert (b.status, c.status) == (statuses.FAILED, statuses.FAILED)
    assert b.error is not None and b.error["reason"] == reasons.DEPENDENCY_FAILED
    assert b.error["details"]["dependency_id"] == t["a"].id
    assert c.error is not None and c.error["details"]["dependency_id"] == t["b"].id
    assert lab.gates.started == ["a"]  # nothing that depended on it ran


async def test_cancel_interrupts_the_running_and_cascades_to_dependents(lab: Lab) -> None:
    t = await lab.tree(
        group("root"),
        spec("a", parent="root"),
        spec("b", parent="root", deps=("a",)),
    )
    await lab.until_started("a")
    _, cancelled = await lab.tasks.cancel(t["a"].id, ANONYMOUS)
    assert cancelled == [t["a"].id]
    await lab.until_finished(t["root"])
    b = await lab.tasks.get(t["b"].id, ANONYMOUS)
    assert lab.status(t["a"]) == statuses.CANCELLED
    assert b.status == statuses.CANCELLED
    assert b.error is not None and b.error["reason"] == reasons.DEPENDENCY_CANCELLED
    assert lab.engine.running == 0  # the interrupted attempt gave its slot back


# ---------------------------------------------------------------------- priority


async def test_ready_tasks_start_by_priority_then_creation() -> None:
    async with make_lab(max_concurrency=1) as lab:
        t = await lab.tree(
            group("root"),
            spec("blocker", parent="root", priority=0),
            spec("low", parent="root", priority=3),
            spec("urgent-1", parent="root", priority=0),
            spec("normal", parent="root"),
            spec("urgent-2", parent="root", priority=0),
        )
        await lab.until_started("blocker")
        for name in ("blocker", "urgent-1", "urgent-2", "normal", "low"):
            lab.gates.gate(name).set()
        await lab.until_finished(t["root"])
        assert lab.gates.started == ["blocker", "urgent-1", "urgent-2", "normal", "low"]


# ---------------------------------------------------------------------- progress


async def test_group_progress_is_the_mean_of_its_executable_tasks(lab: Lab) -> None:
    t = await lab.tree(
        group("root"),
        group("g", parent="root"),
        spec("a", parent="g"),
        spec("b", parent="g"),
        spec("c", parent="root", deps=("a",)),
    )
    await lab.until_started("a", "b")
    await asyncio.sleep(0.15)  # progress reports are written at most every 100 ms
    assert (await lab.tasks.get(t["g"].id, ANONYMOUS)).progress == pytest.approx(0.5)
    lab.gates.gate("a").set()
    await lab.until_started("c")
    # g: a done (1.0) and b at 0.5; root: a, b and c (just started, 0.5).
    assert (await lab.tasks.get(t["g"].id, ANONYMOUS)).progress == pytest.approx(0.75)
    assert (await lab.tasks.get(t["root"].id, ANONYMOUS)).progress == pytest.approx(2.0 / 3)
    for name in ("b", "c"):
        lab.gates.gate(name).set()
    await lab.until_finished(t["root"])
    assert (await lab.tasks.get(t["root"].id, ANONYMOUS)).progress == 1.0


# ---------------------------------------------------------------------- storage failures


async def test_a_transient_storage_failure_delays_but_loses_nothing(lab: Lab) -> None:
    t = await lab.tree(
        group("root"), spec("a", parent="root"), spec("b", parent="root", deps=("a",))
    )
    await lab.until_started("a")
    availability: list[bool] = []
    lab.writer.on_availability = availability.append
    lab.memory.fail_next(1_000_000)  # the disk is full until further notice
    lab.gates.gate("a").set()
    await until(lambda: not lab.writer.available, 5)
    # New work is refused while storage fails; nothing of a's completion is visible.
    with pytest.raises(ServiceError) as refused:
        await lab.tasks.create_task(spec("later", executor="sleep_executor"), ANONYMOUS)
    assert refused.value.reason == reasons.STORAGE_UNAVAILABLE
    assert lab.status(t["a"]) == statuses.IN_PROGRESS
    assert lab.statuses_published(t["a"]) == [statuses.IN_PROGRESS]
    lab.memory.fail_next(0)  # space again: everything queued commits, b runs
    await lab.until_started("b")
    lab.gates.gate("b").set()
    await lab.until_finished(t["root"])
    assert availability == [False, True]
    assert lab.statuses_published(t["a"]) == [statuses.IN_PROGRESS, statuses.COMPLETED]
    assert _memory_equals_engine(lab, t)


async def test_a_refused_creation_fails_its_request_and_nothing_else(lab: Lab) -> None:
    lab.memory.refuse = lambda write: (
        isinstance(write, InsertTasks) and any(row.name == "poison" for row in write.rows)
    )
    gate = asyncio.Event()

    async def create(name: str) -> TaskRow:
        await gate.wait()
        return await lab.tasks.create_task(spec(name, executor="sleep_executor"), ANONYMOUS)

    calls = [asyncio.create_task(create(name)) for name in ("x", "poison", "y")]
    await asyncio.sleep(0)
    gate.set()
    x, poison, y = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(x, TaskRow) and isinstance(y, TaskRow)
    assert isinstance(poison, ServiceError) and poison.reason == reasons.WRITE_REFUSED
    assert {row.name for row in lab.memory.tasks.values()} == {"x", "y"}
    assert {e.name for e in lab.published} == {"x", "y"}


async def test_a_refused_outcome_reloads_the_tree_and_abandons_the_task(lab: Lab) -> None:
    """The database refuses one task's completion: its tree is loaded again from what is
    durable, the task's lost attempt is retried, then abandoned; its neighbours finish."""

    def refuse(write: Write) -> bool:
        return isinstance(write, UpdateState) and any(
            event.name == "doomed" and event.status == statuses.COMPLETED for event in write.events
        )

    lab.memory.refuse = refuse
    t = await lab.tree(
        group("root"),
        spec("doomed", parent="root", max_attempts=2),
        spec("fine", parent="root"),
        spec("after", parent="root", deps=("fine",)),
    )
    for name in ("doomed", "fine", "after"):
        lab.gates.gate(name).set()
    await lab.until_finished(t["root"])
    doomed = await lab.tasks.get(t["doomed"].id, ANONYMOUS)
    assert doomed.status == statuses.FAILED
    assert doomed.error is not None and doomed.error["reason"] == reasons.ABANDONED
    assert doomed.attempt == 2
    assert lab.status(t["after"]) == statuses.COMPLETED
    # No event of a refused write was published; what was published is what is stored.
    assert statuses.COMPLETED not in lab.statuses_published(t["doomed"])
    assert _memory_equals_engine(lab, t)


# ---------------------------------------------------------------------- claim window


def _claims(writes: Sequence[Write]) -> list[str]:
    """Names of the tasks these writes claim (pending -> in_progress; groups run nothing)."""
    return [
        event.name
        for write in writes
        if isinstance(write, UpdateState)
        for event in write.events
        if event.status == statuses.IN_PROGRESS
        and event.previous_status == statuses.PENDING
        and not event.is_group
    ]


def _spy(memory: MemoryStore, before: Callable[[Sequence[Write]], Awaitable[None]]) -> None:
    """Run `before(writes)` ahead of every batch the store commits (it may raise)."""
    apply = memory.apply

    async def spied(writes: Sequence[Write]) -> Applied:
        await before(writes)
        return await apply(writes)

    memory.apply = spied  # type: ignore[method-assign]


def _gated_tree(n: int) -> list[TaskSpec]:
    return [group("root"), *(spec(f"t{i:03}", parent="root") for i in range(n))]


async def test_claims_go_on_after_their_commit_failed_for_a_while() -> None:
    """The first claims' commit fails (disk full) a few times: once it commits, the
    window refills until the concurrency limit is full, though no task ends meanwhile."""
    limit = 2 * CLAIM_WINDOW + 16
    failures = 3

    async def fail_claims(writes: Sequence[Write]) -> None:
        nonlocal failures
        if failures and _claims(writes):
            failures -= 1
            raise TransientStorageError("database or disk is full")

    async with make_lab(max_concurrency=limit) as lab:
        _spy(lab.memory, fail_claims)
        t = await lab.tree(*_gated_tree(limit + 10))
        await until(lambda: len(lab.gates.started) == limit, 5)
        assert failures == 0
        await asyncio.sleep(0.05)
        assert len(lab.gates.started) == limit  # and no more
        for name in t:
            lab.gates.gate(name).set()
        await lab.until_finished(t["root"])
        assert lab.status(t["root"]) == statuses.COMPLETED
        assert _memory_equals_engine(lab, t)


async def test_claims_go_on_after_a_claim_was_refused() -> None:
    """The database refuses one claim once: its tree is loaded again, the window still
    refills, every task runs once and the tree completes."""
    limit = 2 * CLAIM_WINDOW + 16
    refused: list[str] = []

    def refuse_t005_once(write: Write) -> bool:
        if not refused and "t005" in _claims([write]):
            refused.append("t005")
            return True
        return False

    async with make_lab(max_concurrency=limit) as lab:
        lab.memory.refuse = refuse_t005_once
        t = await lab.tree(*_gated_tree(limit + 10))
        await until(lambda: len(lab.gates.started) == limit, 5)
        assert refused == ["t005"]
        for name in t:
            lab.gates.gate(name).set()
        await lab.until_finished(t["root"])
        assert lab.status(t["root"]) == statuses.COMPLETED
        assert sorted(lab.gates.started) == sorted(name for name in t if name != "root")
        assert _memory_equals_engine(lab, t)


def _sleepers(n: int) -> list[TaskSpec]:
    return [
        group("root"),
        *(spec(f"s{i:04}", parent="root", executor="sleep_executor") for i in range(n)),
    ]


async def test_a_large_execute_commits_its_flag_before_any_claim() -> None:
    """ExecuteTask of more than 1,000 tasks: the flag commits alone; the first claims go
    in later commits, so they do not wait out (and count as running) that long commit."""
    batches: list[list[Write]] = []

    async def record(writes: Sequence[Write]) -> None:
        batches.append(list(writes))

    async with make_lab(max_tree_size=2000) as lab:
        t = await lab.tree(*_sleepers(1200), execute=False)
        _spy(lab.memory, record)
        await lab.tasks.execute(t["root"].id, ANONYMOUS)
        await lab.until_finished(t["root"])
        assert lab.status(t["root"]) == statuses.COMPLETED
    flag = [
        i for i, b in enumerate(batches) if any(isinstance(w, MarkExecutionRequested) for w in b)
    ]
    assert len(flag) == 1
    assert _claims(batches[flag[0]]) == []
    assert sum(len(_claims(b)) for b in batches[flag[0] + 1 :]) == 1200


async def test_a_large_execute_cancelled_while_its_flag_commits_still_runs() -> None:
    """The caller goes away (a deadline, a cancelled RPC) while the flag of a large
    ExecuteTask commits: the flag is durable and what it armed still runs."""
    flag_held = asyncio.Event()
    release = asyncio.Event()

    async def hold_the_flag(writes: Sequence[Write]) -> None:
        if any(isinstance(write, MarkExecutionRequested) for write in writes):
            flag_held.set()
            await release.wait()

    async with make_lab(max_tree_size=2000) as lab:
        t = await lab.tree(*_sleepers(1200), execute=False)
        _spy(lab.memory, hold_the_flag)
        call = asyncio.create_task(lab.tasks.execute(t["root"].id, ANONYMOUS))
        await asyncio.wait_for(flag_held.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()
        await lab.until_finished(t["root"])
        assert lab.status(t["root"]) == statuses.COMPLETED


# ---------------------------------------------------------------------- helpers


def _memory_equals_engine(lab: Lab, t: dict[str, TaskRow]) -> bool:
    """Each stored status is the last one published for the task."""
    for row in t.values():
        stored = lab.memory.tasks[row.id].status
        published = [e.status for e in lab.published if e.task_id == row.id]
        if published[-1] != stored:
            return False
    return True


# ---------------------------------------------------------------------- shutdown


async def test_stopping_hands_back_an_attempt_cancelled_before_its_first_step() -> None:
    """The race the issue saw 1 in 20 graceful stops, made deterministic: the stop comes
    after the claim committed and the attempt was launched, before its first step. The
    attempt is handed back (it does not count) and runs after the next start."""
    published: list[Event] = []
    store, memory = memory_store(published.extend)
    gates = Gates()
    registry = ExecutorRegistry([*BUILTIN_EXECUTORS, Executor(GATE, gates.run)])
    engine = Engine(store, registry)
    await store.writer.start()
    await engine.start()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop_right_after_the_claim(write: Write) -> bool:
        if isinstance(write, UpdateState) and any(
            change.status == statuses.IN_PROGRESS for change in write.changes
        ):
            # Queued now, this runs after the claim's commit and the attempt's launch,
            # before the attempt's first step.
            loop.call_soon(lambda: stopping.extend(engine.begin_close()))
            memory.refuse = lambda _: False
        return False

    memory.refuse = stop_right_after_the_claim
    created = await Tasks(store, engine, registry, max_tree_size=10).create_tree(
        [spec("only")], ANONYMOUS, execute=True
    )
    task_id = created.top.id
    await until(lambda: bool(stopping), 5)
    await asyncio.gather(*stopping, return_exceptions=True)
    await engine.close()
    await store.writer.close()
    assert gates.started == []
    handed_back = memory.tasks[task_id]
    assert (handed_back.status, handed_back.attempt) == (statuses.PENDING, 0)

    # The next start runs it, as its first attempt.
    store = TaskStore(memory, Writer(memory, published.extend))
    engine = Engine(store, registry)
    await store.writer.start()
    await engine.start()
    try:
        gates.gate("only").set()
        await until(lambda: memory.tasks[task_id].status in statuses.TERMINAL, 5)
        assert (memory.tasks[task_id].status, memory.tasks[task_id].attempt) == (
            statuses.COMPLETED,
            1,
        )
        assert gates.started == ["only"]
    finally:
        await engine.close()
        await store.writer.close()


async def test_a_stop_while_storage_fails_gives_up_and_answers_unavailable() -> None:
    """Shutting down with the disk still full: the writer stops retrying after its grace
    and the requests that wait on it are answered UNAVAILABLE, not left hanging."""
    store, memory = memory_store()
    await store.writer.start()
    memory.fail_next(1_000_000)

    async def request() -> None:
        store.writer.queue(InsertTasks([], []))
        await store.writer.flush()

    waiting = asyncio.create_task(request())
    await until(lambda: not store.writer.available, 5)
    await asyncio.wait_for(store.writer.close(give_up_after=0.2), 10)
    with pytest.raises(ServiceError) as refused:
        await waiting
    assert refused.value.reason == reasons.STORAGE_UNAVAILABLE


async def test_the_memory_store_lists_in_both_orders_after_a_key(lab: Lab) -> None:
    t = await lab.tree(group("root"), *(spec(ref, parent="root") for ref in "abc"), execute=False)
    seqs = [lab.memory.tasks[t[ref].id].seq for ref in ("root", "a", "b", "c")]
    ids = [t[ref].id for ref in ("root", "a", "b", "c")]

    async def listed(**filters: Any) -> list[str]:
        return [row.id for row in await lab.memory.list_tasks(ListFilter(**filters))]

    assert await listed() == ids
    assert await listed(newest_first=True) == ids[::-1]
    assert await listed(after_seq=seqs[1]) == ids[2:]
    assert await listed(after_seq=seqs[2], newest_first=True) == ids[1::-1]
    assert await listed(newest_first=True, limit=2, parent_id=t["root"].id) == ids[:1:-1]
