"""Per-attempt logs through the real server: lines an in-process executor logs are stored
per attempt (capped, with the count of lines cut), survive a restart, stream live with
`follow` until the task ends (across retries), and a failure's traceback ends its log."""

from __future__ import annotations

import asyncio
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.waiting import WAIT_S
from taskgrove import (
    AsyncClient,
    InvalidArgumentError,
    LogLine,
    NotFoundError,
    UnavailableError,
    statuses,
)
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry
from taskgrove_server.logs.attempt_log import MAX_BYTES, MAX_LINE_CHARS, MAX_LINES

from tests.conftest import ServerFactory


class Talker:
    """`talk`: logs `inputs.lines` lines (`inputs.size` characters each), fails while its
    attempt is below `inputs.fail_until`, and waits for its gate when `inputs.gate` says."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def registry(self) -> ExecutorRegistry:
        async def run(context: ExecutionContext) -> Any:
            inputs = context.inputs
            for i in range(int(inputs.get("lines", 0))):
                text = f"attempt {context.attempt} line {i + 1}"
                context.log(text.ljust(int(inputs.get("size", 0)), "x"))
            if gate := inputs.get("gate"):
                async with asyncio.timeout(WAIT_S):
                    await self.gates[gate].wait()
                context.log(f"attempt {context.attempt} after the gate")
            if context.attempt < int(inputs.get("fail_until", 0)):
                raise RuntimeError(f"attempt {context.attempt} gave up")
            return {"attempt": context.attempt}

        registry = ExecutorRegistry.default(load_entry_points=False)
        registry.register(Executor(id="talk", run=run, input_schema={"type": "object"}))
        return registry


async def lines_of(client: AsyncClient, task_id: str, **options: Any) -> list[LogLine]:
    async with asyncio.timeout(WAIT_S):
        return [line async for line in client.task_logs(task_id, **options)]


async def ran(client: AsyncClient, **fields: Any) -> str:
    task = await client.create_task(name="talker", executor="talk", **fields)
    await client.execute_task(task.id)
    async with asyncio.timeout(WAIT_S):
        await client.wait(task.id)
    return task.id


@pytest.fixture
async def talker() -> Talker:
    return Talker()


@pytest.fixture
async def talk_client(make_server: ServerFactory, talker: Talker) -> AsyncIterator[AsyncClient]:
    server = await make_server(registry=talker.registry())
    yield make_server.client(server)


async def test_each_attempt_keeps_its_own_lines_and_a_failure_ends_with_its_traceback(
    talk_client: AsyncClient,
) -> None:
    task_id = await ran(
        talk_client,
        inputs={"lines": 3, "fail_until": 2},
        max_attempts=2,
        retry_backoff=0.001,
    )
    assert (await talk_client.get_task(task_id)).status == statuses.COMPLETED
    first = await lines_of(talk_client, task_id, attempt=1)
    assert [line.text for line in first[:3]] == [f"attempt 1 line {i}" for i in (1, 2, 3)]
    traceback = "\n".join(line.text for line in first[3:])
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.endswith("RuntimeError: attempt 1 gave up")
    assert [line.sequence for line in first] == list(range(1, len(first) + 1))
    assert {line.attempt for line in first} == {1}
    latest = await lines_of(talk_client, task_id)
    assert [(line.attempt, line.text) for line in latest] == [
        (2, f"attempt 2 line {i}") for i in (1, 2, 3)
    ]
    assert latest == await lines_of(talk_client, task_id, attempt=2)
    assert all(line.time is not None and line.cut_before == 0 for line in first + latest)


async def test_a_log_keeps_its_last_lines_and_says_how_many_were_cut(
    talk_client: AsyncClient,
) -> None:
    many = MAX_LINES + 500
    task_id = await ran(talk_client, inputs={"lines": many})
    kept = await lines_of(talk_client, task_id)
    assert len(kept) == MAX_LINES
    assert kept[0].text == "attempt 1 line 501" and kept[0].sequence == 501
    assert kept[0].cut_before == 500
    assert kept[-1].text == f"attempt 1 line {many}"
    assert all(line.cut_before == 0 for line in kept[1:])


async def test_a_log_keeps_at_most_a_mebibyte_and_long_lines_are_cut(
    talk_client: AsyncClient,
) -> None:
    task_id = await ran(talk_client, inputs={"lines": 300, "size": MAX_LINE_CHARS + 100})
    kept = await lines_of(talk_client, task_id)
    assert all(len(line.text) == MAX_LINE_CHARS and line.text.endswith("…") for line in kept)
    size = sum(len(line.text.encode()) for line in kept)
    assert size <= MAX_BYTES < size + len(kept[0].text.encode())
    assert kept[0].cut_before == 300 - len(kept)
    assert kept[-1].text.startswith("attempt 1 line 300x")


async def test_following_streams_lines_as_they_come_until_the_task_ends_across_retries(
    talk_client: AsyncClient, talker: Talker
) -> None:
    task = await talk_client.create_task(
        name="talker",
        executor="talk",
        inputs={"lines": 2, "gate": "g", "fail_until": 2},
        max_attempts=2,
        retry_backoff=0.001,
    )
    seen: list[LogLine] = []
    two_lines = asyncio.Event()

    async def follow() -> None:
        async for line in talk_client.task_logs(task.id, follow=True):
            seen.append(line)
            if len(seen) == 2:
                two_lines.set()

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.1)  # the follower waits for a first attempt that has not started
    await talk_client.execute_task(task.id)
    async with asyncio.timeout(WAIT_S):
        await two_lines.wait()  # live: the attempt still waits at its gate
    assert not follower.done()
    assert (await talk_client.get_task(task.id)).status == statuses.IN_PROGRESS
    talker.gates["g"].set()  # attempt 1 fails after its gate; attempt 2 passes it
    async with asyncio.timeout(WAIT_S):
        await follower
    texts = [(line.attempt, line.text) for line in seen]
    first = [text for attempt, text in texts if attempt == 1]
    assert first[:3] == ["attempt 1 line 1", "attempt 1 line 2", "attempt 1 after the gate"]
    assert first[-1] == "RuntimeError: attempt 1 gave up"
    assert [text for attempt, text in texts if attempt == 2] == [
        "attempt 2 line 1",
        "attempt 2 line 2",
        "attempt 2 after the gate",
    ]
    assert (await talk_client.get_task(task.id)).status == statuses.COMPLETED


async def test_following_one_attempt_ends_with_that_attempt(
    talk_client: AsyncClient, talker: Talker
) -> None:
    task_id = await ran(
        talk_client, inputs={"lines": 1, "fail_until": 2}, max_attempts=2, retry_backoff=0.001
    )
    # Attempt 1 ended long ago: following it returns its stored lines and ends.
    first = await lines_of(talk_client, task_id, attempt=1, follow=True)
    assert first[0].text == "attempt 1 line 1"
    assert {line.attempt for line in first} == {1}


async def test_a_task_that_never_ran_has_no_lines(talk_client: AsyncClient) -> None:
    task = await talk_client.create_task(name="idle", executor="talk")
    assert await lines_of(talk_client, task.id) == []
    assert await lines_of(talk_client, task.id, attempt=3) == []


async def test_bad_requests_are_refused_before_anything_streams(talk_client: AsyncClient) -> None:
    task = await talk_client.create_task(name="idle", executor="talk")
    with pytest.raises(InvalidArgumentError) as refused:
        await lines_of(talk_client, task.id, attempt=-1)
    assert refused.value.reason == "INVALID_ATTEMPT"
    with pytest.raises(NotFoundError) as missing:
        await lines_of(talk_client, "00000000-0000-0000-0000-000000000000")
    assert missing.value.reason == "TASK_NOT_FOUND"
    with pytest.raises(InvalidArgumentError) as empty:
        await lines_of(talk_client, "")
    assert empty.value.reason == "ID_REQUIRED"


async def test_logs_survive_a_restart(make_server: ServerFactory, talker: Talker) -> None:
    server = await make_server(registry=talker.registry())
    client = make_server.client(server)
    task_id = await ran(client, inputs={"lines": 5})
    await make_server.stop(server)
    again = await make_server(registry=talker.registry(), db_url=server.config.db_url)
    kept = await lines_of(make_server.client(again), task_id)
    assert [line.text for line in kept] == [f"attempt 1 line {i}" for i in range(1, 6)]


async def test_a_follower_is_told_when_the_server_shuts_down(
    make_server: ServerFactory, talker: Talker
) -> None:
    server = await make_server(registry=talker.registry())
    client = make_server.client(server)
    task = await client.create_task(name="t", executor="talk", inputs={"lines": 1, "gate": "g"})
    await client.execute_task(task.id)
    first = asyncio.Event()

    async def follow() -> None:
        async for _ in client.task_logs(task.id, follow=True):
            first.set()

    follower = asyncio.create_task(follow())
    async with asyncio.timeout(WAIT_S):
        await first.wait()
    await make_server.stop(server, grace=5)
    with pytest.raises(UnavailableError) as stopped:
        async with asyncio.timeout(WAIT_S):
            await follower
    assert stopped.value.reason == "SERVER_SHUTTING_DOWN"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
async def test_a_commands_output_goes_to_its_log_line_by_line(make_server: ServerFactory) -> None:
    server = await make_server(allowed_commands=["sh"])
    client = make_server.client(server)
    task = await client.create_task(
        name="cmd",
        executor="command_executor",
        inputs={"argv": ["sh", "-c", "echo one; echo two >&2; printf 'three'"]},
    )
    await client.execute_task(task.id)
    async with asyncio.timeout(WAIT_S):
        await client.wait(task.id)
    texts = sorted(line.text for line in await lines_of(client, task.id))
    assert texts == ["one", "stderr: two", "three"]


async def test_following_a_task_that_is_cancelled_ends_with_it(talk_client: AsyncClient) -> None:
    task = await talk_client.create_task(
        name="talker", executor="talk", inputs={"lines": 1, "gate": "never"}
    )
    await talk_client.execute_task(task.id)
    first = asyncio.Event()
    seen: list[str] = []

    async def follow() -> None:
        async for line in talk_client.task_logs(task.id, follow=True):
            seen.append(line.text)
            first.set()

    follower = asyncio.create_task(follow())
    async with asyncio.timeout(WAIT_S):
        await first.wait()
    await talk_client.cancel_task(task.id)
    async with asyncio.timeout(WAIT_S):
        await follower
    assert seen == ["attempt 1 line 1"]


async def test_a_run_handed_back_at_shutdown_is_replaced_by_its_rerun(
    make_server: ServerFactory, talker: Talker
) -> None:
    server = await make_server(registry=talker.registry())
    client = make_server.client(server)
    task = await client.create_task(
        name="t", executor="talk", inputs={"lines": 2, "gate": "g"}, max_attempts=1
    )
    await client.execute_task(task.id)
    async with asyncio.timeout(WAIT_S):
        async for line in client.task_logs(task.id, follow=True):
            if line.sequence == 2:
                break  # both lines are stored; the attempt waits at its gate
    await make_server.stop(server)  # hands the running attempt back: it does not count
    talker.gates["g"].set()
    again = await make_server(registry=talker.registry(), db_url=server.config.db_url)
    client = make_server.client(again)
    async with asyncio.timeout(WAIT_S):
        done = await client.wait(task.id)
    assert (done.status, done.attempt) == (statuses.COMPLETED, 1)
    assert [line.text for line in await lines_of(client, task.id)] == [
        "attempt 1 line 1",
        "attempt 1 line 2",
        "attempt 1 after the gate",
    ]


async def test_a_flood_logged_without_yielding_keeps_the_last_lines(
    talk_client: AsyncClient,
) -> None:
    many = 50 * MAX_LINES  # all before the first flush: the executor never yields
    task_id = await ran(talk_client, inputs={"lines": many})
    kept = await lines_of(talk_client, task_id)
    assert [line.sequence for line in kept] == list(range(many - MAX_LINES + 1, many + 1))
    assert kept[0].cut_before == many - MAX_LINES
