"""Automatic retries with backoff, timeouts, and RetryTask (DESIGN 3, 4).

Timing is asserted only as lower bounds (the jitter floor of the backoff, the timeout);
never as upper bounds.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from support.events import history
from support.trees import ids, sleeper
from support.waiting import WAIT_S, until_task, wait_finished
from taskgrove import AsyncClient, FailedPreconditionError, Task, TaskEvent, statuses
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

if TYPE_CHECKING:
    from conftest import ServerFactory

CLOCK_SLACK_S = 0.002
"""Event times are taken a few microseconds after the backoff is computed."""


@dataclass
class Lab:
    client: AsyncClient
    attempts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """Task name -> attempt numbers the test executors saw, in order."""
    gates: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    async def until(self, task_id: str, predicate: Callable[[Task], bool]) -> Task:
        return await until_task(self.client, task_id, predicate)

    async def wait(self, task_id: str) -> Task:
        return await wait_finished(self.client, task_id)


def registry_for(lab: Lab) -> ExecutorRegistry:
    async def flaky(context: ExecutionContext) -> Any:
        """Fails (EXECUTOR_ERROR) until attempt `succeed_on`."""
        lab.attempts[context.name].append(context.attempt)
        if context.attempt < int(context.inputs.get("succeed_on", 1_000)):
            raise RuntimeError(f"attempt {context.attempt} fails")
        return {"attempt": context.attempt}

    async def gated(context: ExecutionContext) -> Any:
        """Attempt 1 waits for its gate; later attempts return at once."""
        lab.attempts[context.name].append(context.attempt)
        if context.attempt == 1:
            async with asyncio.timeout(WAIT_S):
                await lab.gates[context.name].wait()
        return {"attempt": context.attempt}

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="flaky", run=flaky))
    registry.register(Executor(id="gated", run=gated))
    return registry


@pytest.fixture
async def lab(make_server: ServerFactory) -> Lab:
    placeholder = Lab(client=None)  # type: ignore[arg-type]
    instance = await make_server(registry=registry_for(placeholder))
    placeholder.client = make_server.client(instance)
    return placeholder


def flaky(name: str, parent: str | None = "root", succeed_on: int = 2, **fields: Any) -> dict:
    return {
        "id": name,
        "name": name,
        "executor": "flaky",
        "parent_id": parent,
        "inputs": {"succeed_on": succeed_on},
        **fields,
    }


async def status_events(client: AsyncClient, task_id: str) -> list[TaskEvent]:
    return [e for e in await history(client, task_id=task_id) if e.type == "status_changed"]


def seconds_between(earlier: TaskEvent, later: TaskEvent) -> float:
    assert earlier.time is not None and later.time is not None
    return (later.time - earlier.time).total_seconds()


# ------------------------------------------------------------------ automatic retries


async def test_retries_until_success_with_exponential_backoff(lab: Lab) -> None:
    base = 0.05
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            flaky("t", succeed_on=3, max_attempts=3, retry_backoff=base),
        ],
        execute=True,
    )
    tid = ids(created)
    task = await lab.wait(tid["t"])
    assert task.status == statuses.COMPLETED
    assert task.attempt == 3
    assert task.result == {"attempt": 3}
    assert task.error is None
    assert lab.attempts["t"] == [1, 2, 3]

    events = await status_events(lab.client, tid["t"])
    assert [(e.previous_status, e.status, e.attempt) for e in events] == [
        (statuses.PENDING, statuses.IN_PROGRESS, 1),
        (statuses.IN_PROGRESS, statuses.PENDING, 1),
        (statuses.PENDING, statuses.IN_PROGRESS, 2),
        (statuses.IN_PROGRESS, statuses.PENDING, 2),
        (statuses.PENDING, statuses.IN_PROGRESS, 3),
        (statuses.IN_PROGRESS, statuses.COMPLETED, 3),
    ]
    # The failures waiting out their backoff carry the attempt's error.
    for failure in (events[1], events[3]):
        assert failure.error is not None and failure.error.reason == "EXECUTOR_ERROR"
    # Backoff: base * 2^(n-1), jittered within its upper half: at least half of it.
    first_gap = seconds_between(events[1], events[2])
    second_gap = seconds_between(events[3], events[4])
    assert first_gap >= base / 2 - CLOCK_SLACK_S
    assert second_gap >= base - CLOCK_SLACK_S
    assert events == sorted(events, key=lambda e: e.sequence)


async def test_retries_exhausted_fail_with_the_last_error(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            flaky("t", succeed_on=5, max_attempts=2, retry_backoff=0.01),
        ],
        execute=True,
    )
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.attempt == 2
    assert task.error is not None and task.error.reason == "EXECUTOR_ERROR"
    assert "attempt 2 fails" in task.error.message


async def test_timeout_fails_the_task_with_reason_timeout(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("t", 5, timeout=0.2)],
        execute=True,
    )
    task = await lab.wait(created["t"].id)
    assert task.status == statuses.FAILED
    assert task.error is not None and task.error.reason == "TIMEOUT"
    assert task.attempt == 1
    assert task.timeout == timedelta(milliseconds=200)
    assert task.start_time is not None and task.end_time is not None
    assert (task.end_time - task.start_time).total_seconds() >= 0.2 - CLOCK_SLACK_S
    assert (await lab.client.get_task(created["root"].id)).status == statuses.FAILED


async def test_timeouts_are_retried_then_fail_with_timeout(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            sleeper("t", 5, timeout=0.2, max_attempts=2, retry_backoff=0.05),
        ],
        execute=True,
    )
    tid = ids(created)
    task = await lab.wait(tid["t"])
    assert task.status == statuses.FAILED
    assert task.error is not None and task.error.reason == "TIMEOUT"
    assert task.attempt == 2
    events = await status_events(lab.client, tid["t"])
    assert [(e.status, e.attempt) for e in events] == [
        (statuses.IN_PROGRESS, 1),
        (statuses.PENDING, 1),
        (statuses.IN_PROGRESS, 2),
        (statuses.FAILED, 2),
    ]
    assert events[1].error is not None and events[1].error.reason == "TIMEOUT"
    # Each attempt ran at least its timeout.
    assert seconds_between(events[0], events[1]) >= 0.2 - CLOCK_SLACK_S
    assert seconds_between(events[2], events[3]) >= 0.2 - CLOCK_SLACK_S


async def test_explain_during_backoff_says_retry_backoff_with_the_retry_time(lab: Lab) -> None:
    base = 1.0
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            flaky("t", succeed_on=2, max_attempts=2, retry_backoff=base),
        ],
        execute=True,
    )
    tid = ids(created)
    waiting = await lab.until(tid["t"], lambda t: t.status == statuses.PENDING and t.attempt == 1)
    why = await lab.client.explain_task(tid["t"])
    assert "RETRY_BACKOFF" in why.reasons
    assert "RUNNING" not in why.reasons and "QUEUED" not in why.reasons
    assert why.retry_time is not None
    assert why.queue_position == 0
    assert why.task.status == statuses.PENDING
    assert waiting.update_time is not None

    task = await lab.wait(tid["t"])
    assert task.status == statuses.COMPLETED
    assert task.attempt == 2
    events = await status_events(lab.client, tid["t"])
    failed_at = events[1]
    retried_at = events[2]
    assert (failed_at.status, retried_at.status) == (statuses.PENDING, statuses.IN_PROGRESS)
    assert failed_at.time is not None and retried_at.time is not None
    # The announced retry time is at least the jitter floor after the failure, and the
    # attempt did not start before it.
    assert (why.retry_time - failed_at.time).total_seconds() >= base / 2 - CLOCK_SLACK_S
    assert (retried_at.time - why.retry_time).total_seconds() >= -CLOCK_SLACK_S


async def test_cancel_during_backoff_stops_further_attempts(lab: Lab) -> None:
    created = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            flaky("t", succeed_on=2, max_attempts=3, retry_backoff=0.3),
        ],
        execute=True,
    )
    tid = ids(created)
    await lab.until(tid["t"], lambda t: t.status == statuses.PENDING and t.attempt == 1)
    assert await lab.client.cancel_task(tid["t"]) == [tid["t"]]
    await asyncio.sleep(0.5)  # longer than the whole backoff (at most 0.3 s)
    task = await lab.client.get_task(tid["t"])
    assert task.status == statuses.CANCELLED
    assert task.attempt == 1
    assert lab.attempts["t"] == [1]


# ------------------------------------------------------------------ RetryTask


async def failed_forest(lab: Lab) -> tuple[dict[str, str], dict[str, str]]:
    """Tree A: f (fails, with a failing child fc), f2 (fails), ok (completes), dep and
    dep2 (failed because of f, then dep). Tree B: x (on f), z (on fc), w (on f2)."""
    a = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            flaky("f"),
            flaky("fc", parent="f"),
            flaky("f2"),
            sleeper("ok"),
            sleeper("dep", dependencies=["f"]),
            sleeper("dep2", dependencies=["dep"]),
        ],
        execute=True,
    )
    tid = ids(a)
    b = await lab.client.create_task_tree(
        [
            {"id": "broot", "name": "other_tree"},
            sleeper("x", parent="broot", dependencies=[tid["f"]]),
            sleeper("z", parent="broot", dependencies=[tid["fc"]]),
            sleeper("w", parent="broot", dependencies=[tid["f2"]]),
        ],
        execute=True,
    )
    bid = ids(b)
    assert (await lab.wait(tid["root"])).status == statuses.FAILED
    assert (await lab.wait(bid["broot"])).status == statuses.FAILED
    for name in ("f", "fc", "f2"):
        task = await lab.client.get_task(tid[name])
        assert task.status == statuses.FAILED and task.attempt == 1
    expected_cause = {
        "dep": tid["f"],
        "dep2": tid["dep"],
        "x": tid["f"],
        "z": tid["fc"],
        "w": tid["f2"],
    }
    for name, cause in expected_cause.items():
        task = await lab.client.get_task(tid.get(name) or bid[name])
        assert task.status == statuses.FAILED, name
        assert task.error is not None and task.error.reason == "DEPENDENCY_FAILED", name
        assert task.error.details.get("dependency_id") == cause, name
        assert task.attempt == 0
    return tid, bid


async def test_retry_task_reruns_it_its_failed_descendants_and_dependents(lab: Lab) -> None:
    tid, bid = await failed_forest(lab)
    ok_before = await lab.client.get_task(tid["ok"])
    w_before = await lab.client.get_task(bid["w"])
    f2_before = await lab.client.get_task(tid["f2"])
    last_sequence = max(e.sequence for e in await history(lab.client))

    retried = await lab.client.retry_task(tid["f"])

    expected = {tid["f"], tid["fc"], tid["dep"], tid["dep2"], bid["x"], bid["z"]}
    assert sorted(retried) == sorted(expected)
    assert (await lab.wait(tid["root"])).status == statuses.FAILED  # f2 still failed
    assert (await lab.wait(bid["broot"])).status == statuses.FAILED  # w still failed
    for name in ("f", "fc"):
        task = await lab.client.get_task(tid[name])
        assert task.status == statuses.COMPLETED, name
        assert task.attempt == 2, name  # numbered on from the last attempt
        assert task.error is None
        assert lab.attempts[name] == [1, 2]
    for task_id in (tid["dep"], tid["dep2"], bid["x"], bid["z"]):
        task = await lab.client.get_task(task_id)
        assert task.status == statuses.COMPLETED, task.name
        assert task.attempt == 1, task.name
        assert task.error is None
    # What did not fail because of f is untouched.
    assert await lab.client.get_task(tid["ok"]) == ok_before
    assert await lab.client.get_task(bid["w"]) == w_before
    assert await lab.client.get_task(tid["f2"]) == f2_before
    assert lab.attempts["f2"] == [1]

    # Every retried task went failed -> pending, once, after the retry.
    later = [e for e in await history(lab.client) if e.sequence > last_sequence]
    back = [
        e.task_id
        for e in later
        if e.type == "status_changed"
        and e.previous_status == statuses.FAILED
        and e.status == statuses.PENDING
    ]
    assert sorted(back) == sorted(expected)


async def test_retry_of_a_failed_group_reruns_everything_that_failed_below_it(lab: Lab) -> None:
    tid, bid = await failed_forest(lab)
    retried = await lab.client.retry_task(tid["root"])
    expected = {
        tid["f"],
        tid["fc"],
        tid["f2"],
        tid["dep"],
        tid["dep2"],
        bid["x"],
        bid["z"],
        bid["w"],
    }
    assert sorted(retried) == sorted(expected)
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert (await lab.wait(bid["broot"])).status == statuses.COMPLETED
    assert lab.attempts["f2"] == [1, 2]
    assert (await lab.client.get_task(tid["ok"])).attempt == 1


async def test_retry_reruns_dependents_that_failed_because_of_a_group_above_it(
    lab: Lab,
) -> None:
    """A dependent of a group failed because the group failed because of a task below it:
    retrying that task retries the dependent too."""
    a = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "grp", "name": "grp", "parent_id": "root"},
            flaky("f3", parent="grp"),
        ],
        execute=True,
    )
    tid = ids(a)
    b = await lab.client.create_task_tree(
        [
            {"id": "broot", "name": "other"},
            sleeper("on_grp", parent="broot", dependencies=[tid["grp"]]),
        ],
        execute=True,
    )
    bid = ids(b)
    on_grp = await lab.wait(bid["on_grp"])
    assert on_grp.error is not None and on_grp.error.reason == "DEPENDENCY_FAILED"
    assert on_grp.error.details.get("dependency_id") == tid["grp"]

    assert sorted(await lab.client.retry_task(tid["f3"])) == sorted([tid["f3"], bid["on_grp"]])
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert (await lab.wait(bid["on_grp"])).status == statuses.COMPLETED


async def test_retry_of_a_cancelled_task_reruns_it_and_its_cancelled_dependents(
    lab: Lab,
) -> None:
    a = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "g", "name": "g", "executor": "gated", "parent_id": "root"},
        ],
        execute=True,
    )
    tid = ids(a)
    b = await lab.client.create_task_tree(
        [{"id": "broot", "name": "other"}, sleeper("d", parent="broot", dependencies=[tid["g"]])],
        execute=True,
    )
    bid = ids(b)
    await lab.until(tid["g"], lambda t: t.status == statuses.IN_PROGRESS)
    assert await lab.client.cancel_task(tid["g"]) == [tid["g"]]
    dependent = await lab.wait(bid["d"])
    assert dependent.error is not None and dependent.error.reason == "DEPENDENCY_CANCELLED"

    assert sorted(await lab.client.retry_task(tid["g"])) == sorted([tid["g"], bid["d"]])
    g = await lab.wait(tid["g"])
    assert (g.status, g.attempt, g.result) == (statuses.COMPLETED, 2, {"attempt": 2})
    d = await lab.wait(bid["d"])
    assert (d.status, d.attempt) == (statuses.COMPLETED, 1)
    assert (await lab.wait(tid["root"])).status == statuses.COMPLETED
    assert (await lab.wait(bid["broot"])).status == statuses.COMPLETED


async def test_retry_of_a_task_that_is_not_failed_or_cancelled_is_refused(lab: Lab) -> None:
    done = await lab.client.create_task_tree(
        [{"id": "root", "name": "root_task"}, sleeper("t")], execute=True
    )
    completed = await lab.wait(done["t"].id)
    assert completed.status == statuses.COMPLETED
    pending = await lab.client.create_task(name="p", executor="sleep_executor")
    running_tree = await lab.client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "g", "name": "g", "executor": "gated", "parent_id": "root"},
        ],
        execute=True,
    )
    running = await lab.until(running_tree["g"].id, lambda t: t.status == statuses.IN_PROGRESS)

    for task in (completed, pending, running):
        before = await lab.client.get_task(task.id)
        with pytest.raises(FailedPreconditionError) as caught:
            await lab.client.retry_task(task.id)
        assert caught.value.reason == "TASK_NOT_RETRYABLE", task.name
        assert await lab.client.get_task(task.id) == before
    # A completed group is not retryable either.
    with pytest.raises(FailedPreconditionError) as caught:
        await lab.client.retry_task(done["root"].id)
    assert caught.value.reason == "TASK_NOT_RETRYABLE"
    lab.gates["g"].set()


async def test_retry_of_a_task_whose_dependency_stays_cancelled_is_refused(
    client: AsyncClient,
) -> None:
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "root"},
            {
                "id": "slow",
                "name": "slow",
                "parent_id": "root",
                "executor": "sleep_executor",
                "inputs": {"seconds": 30},
            },
            {
                "id": "after",
                "name": "after",
                "parent_id": "root",
                "executor": "sleep_executor",
                "inputs": {"seconds": 0},
                "dependencies": ["slow"],
            },
        ],
        execute=True,
    )
    slow, after = created["slow"].id, created["after"].id
    await until_task(client, slow, lambda t: t.status == statuses.IN_PROGRESS)
    await client.cancel_task(slow)
    before = await until_task(client, after, lambda t: t.status == statuses.CANCELLED)
    with pytest.raises(FailedPreconditionError) as refused:
        await client.retry_task(after)
    assert refused.value.reason == "TASK_NOT_RETRYABLE"
    assert refused.value.metadata["dependency_id"] == slow
    assert slow in str(refused.value) and "cancelled" in str(refused.value)
    assert await client.get_task(after) == before  # nothing changed
    # Retrying the dependency brings the dependent back with it.
    assert set(await client.retry_task(slow)) == {slow, after}
    await client.cancel_task(created["root"].id)
