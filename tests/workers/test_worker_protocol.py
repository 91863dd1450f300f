"""The WorkerService contract at its edges, driven message by message: refused
registrations register nothing, silence loses the lease, a late outcome is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from taskgrove import AsyncClient
from taskgrove.domain import wire
from taskgrove.v1 import worker_service_pb2 as pb
from taskgrove_server.app import TaskgroveServer

from tests.conftest import ServerFactory
from tests.workers.raw import RawWorker, registration
from tests.workers.waiting import until


def reason_of(error: grpc.aio.AioRpcError) -> str:
    from taskgrove._errors import from_rpc_error

    return from_rpc_error(error).reason


async def until_status(client: AsyncClient, task_id: str, status: str) -> None:
    async def reached() -> bool:
        return (await client.get_task(task_id)).status == status

    await until(reached)


async def free_slots(client: AsyncClient) -> dict[str, int]:
    (served,) = [e for e in await client.list_executors() if e.id == "raw_job"]
    return {worker.name: worker.free_slots for worker in served.workers}


@pytest.fixture
async def server(make_server: ServerFactory) -> TaskgroveServer:
    return await make_server(worker_lease_seconds=0.5)


@pytest.mark.parametrize(
    ("register", "field"),
    [
        (registration(name=""), "register.name"),
        (registration(slots=0), "register.slots"),
        (registration(slots=10_001), "register.slots"),
        (registration({}), "register.executors"),
        (registration({"raw_job": {"type": "no such type"}}), "register.executors[0].input_schema"),
        (registration(worker_id=""), "register.worker_id"),
    ],
)
async def test_an_invalid_registration_is_refused_and_registers_nothing(
    server: TaskgroveServer, make_server: ServerFactory, register: pb.WorkerRegistration, field: str
) -> None:
    worker = RawWorker(f"127.0.0.1:{server.port}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await worker.connect(register)
    await worker.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(refused.value) == "INVALID_REGISTRATION"
    from taskgrove._errors import from_rpc_error

    assert field in [v.field for v in from_rpc_error(refused.value).field_violations]
    executors = await make_server.client(server).list_executors()
    assert "raw_job" not in {e.id for e in executors}


async def test_a_conflicting_registration_is_refused(
    server: TaskgroveServer, make_server: ServerFactory
) -> None:
    address = f"127.0.0.1:{server.port}"
    first = RawWorker(address)
    await first.connect(registration({"raw_job": {"type": "object"}}))
    for executors in (
        {"raw_job": {"type": "object", "required": ["x"]}},  # another schema than first's
        {"sleep_executor": {"type": "object"}},  # the server runs it itself
        {"fresh": {"type": "object"}, "sleep_executor": {"type": "object"}},
    ):
        other = RawWorker(address)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await other.connect(registration(executors))
        await other.close()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(refused.value) == "EXECUTOR_CONFLICT"
    executors = {e.id: e for e in await make_server.client(server).list_executors()}
    assert "fresh" not in executors  # nothing of a refused registration
    assert executors["raw_job"].input_schema == {"type": "object"}
    assert len(executors["raw_job"].workers) == 1
    await first.close()


async def test_the_first_message_must_be_a_registration(server: TaskgroveServer) -> None:
    worker = RawWorker(f"127.0.0.1:{server.port}")
    worker.call = worker._stub.Connect(worker._requests())
    worker.heartbeat()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await worker.receive()
    await worker.close()
    assert reason_of(refused.value) == "INVALID_REGISTRATION"


async def raw_bytes_stream(
    address: str, messages: list[bytes], received: list[pb.ConnectResponse]
) -> None:
    """Connect and send `messages` as they are (undecodable ones too); `received` collects
    what comes back until the stream ends (with its AioRpcError)."""
    async with grpc.aio.insecure_channel(address) as channel:
        connect = channel.stream_stream(
            "/taskgrove.v1.WorkerService/Connect",
            request_serializer=lambda data: data,
            response_deserializer=pb.ConnectResponse.FromString,
        )
        gate = asyncio.Event()

        async def requests() -> AsyncIterator[bytes]:
            for message in messages:
                yield message
            await gate.wait()  # keep our side open: the server ends the stream

        call = connect(requests())
        try:
            async with asyncio.timeout(10):
                async for response in call:
                    received.append(response)
        finally:
            gate.set()


GARBAGE = b"\xff\xff\xff\xff"


async def test_an_undecodable_first_message_is_refused_as_malformed(
    server: TaskgroveServer,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw_bytes_stream(f"127.0.0.1:{server.port}", [GARBAGE], [])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(refused.value) == "MALFORMED_REQUEST"


async def test_an_undecodable_message_later_ends_the_stream_as_malformed(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    register = pb.ConnectRequest(register=registration()).SerializeToString()
    received: list[pb.ConnectResponse] = []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await raw_bytes_stream(f"127.0.0.1:{server.port}", [register, GARBAGE], received)
    assert reason_of(refused.value) == "MALFORMED_REQUEST"
    assert [response.WhichOneof("kind") for response in received] == ["registered"]
    await until(lambda: _no_workers(client))  # the pool let the worker go


async def _no_workers(client: AsyncClient) -> bool:
    executors = {e.id: e for e in await client.list_executors()}
    return not executors["raw_job"].workers


async def test_a_silent_worker_loses_its_lease_and_its_late_outcome_is_refused(
    server: TaskgroveServer, make_server: ServerFactory
) -> None:
    client = make_server.client(server)
    address = f"127.0.0.1:{server.port}"
    zombie = RawWorker(address)
    registered = await zombie.connect(registration(name="zombie"))
    assert registered.registered.lease_timeout_seconds == 0.5
    task = await client.create_task(
        name="t",
        executor="raw_job",
        max_attempts=2,
        retry_backoff=__import__("datetime").timedelta(milliseconds=1),
    )
    await client.execute_task(task.id)
    first = (await zombie.receive()).assignment
    assert (first.task_id, first.attempt, first.fencing_token) == (task.id, 1, 1)
    # Silence past the lease: the attempt is lost and counted; the task waits for a worker.
    await until_status(client, task.id, "pending")
    explanation = await client.explain_task(task.id)
    assert "NO_FREE_WORKER" in explanation.reasons or "RETRY_BACKOFF" in explanation.reasons
    healthy = RawWorker(address)
    await healthy.connect(registration(name="healthy"))
    second = (await healthy.receive()).assignment
    assert (second.task_id, second.attempt, second.fencing_token) == (task.id, 2, 2)
    # The zombie wakes up and reports attempt 1: refused, written nowhere.
    zombie.complete(first, {"by": "zombie"})
    ack = (await zombie.receive()).acknowledged
    assert (ack.lease_id, ack.accepted, ack.reason) == (first.lease_id, False, "STALE_LEASE")
    assert (await client.get_task(task.id)).status == "in_progress"
    healthy.complete(second, {"by": "healthy"})
    assert (await healthy.receive()).acknowledged.accepted
    async with asyncio.timeout(10):
        done = await client.wait(task.id)
    assert (done.status, done.result, done.attempt) == ("completed", {"by": "healthy"}, 2)
    for worker in (zombie, healthy):
        await worker.close()


async def test_a_lost_worker_fails_the_task_when_no_attempt_is_left(
    server: TaskgroveServer, make_server: ServerFactory
) -> None:
    client = make_server.client(server)
    worker = RawWorker(f"127.0.0.1:{server.port}")
    await worker.connect(registration(name="gone"))
    task = await client.create_task(name="t", executor="raw_job")
    await client.execute_task(task.id)
    await worker.receive()
    await worker.close()  # disconnects; the lease outlives it by the timeout
    async with asyncio.timeout(10):
        done = await client.wait(task.id)
    assert done.status == "failed"
    assert done.error is not None and done.error.reason == "WORKER_LOST"


async def test_a_worker_that_gives_an_attempt_back_gets_no_more_on_that_stream(
    make_server: ServerFactory,
) -> None:
    # Giving an attempt back (`cancelled` for a live lease) is what a stopping worker does:
    # the attempt runs again without counting, and not in the freed slot of the stream
    # that gave it back (it would only give it back again).
    server = await make_server(worker_lease_seconds=5)
    client = make_server.client(server)
    address = f"127.0.0.1:{server.port}"
    leaving, staying = RawWorker(address), RawWorker(address)
    register = registration(name="leaving")
    await leaving.connect(register)
    task = await client.create_task(
        name="t",
        executor="raw_job",
        max_attempts=1,
    )
    await client.execute_task(task.id)
    first = (await leaving.receive()).assignment
    await staying.connect(registration(name="staying"))
    leaving.send(
        pb.ConnectRequest(
            outcome=pb.AttemptOutcome(
                lease_id=first.lease_id,
                fencing_token=first.fencing_token,
                cancelled=pb.AttemptCancelled(),
            )
        )
    )
    assert (await leaving.receive()).acknowledged.accepted
    second = (await staying.receive()).assignment
    assert (second.task_id, second.attempt) == (task.id, 1)
    assert second.lease_id != first.lease_id
    staying.complete(second, "done")
    assert (await staying.receive()).acknowledged.accepted
    async with asyncio.timeout(10):
        done = await client.wait(task.id)
    assert (done.status, done.result, done.attempt) == ("completed", "done", 1)
    assert await free_slots(client) == {"leaving": 0, "staying": 1}
    # A new stream of the same worker (it did not stop after all) takes work again.
    again = RawWorker(address)
    await again.connect(register)
    assert await free_slots(client) == {"leaving": 1, "staying": 1}
    for worker in (leaving, again, staying):
        await worker.close()


async def test_an_outcome_survives_a_reconnect_within_the_lease(
    make_server: ServerFactory,
) -> None:
    server = await make_server(worker_lease_seconds=5)
    client = make_server.client(server)
    address = f"127.0.0.1:{server.port}"
    register = registration(name="flaky-network")
    worker = RawWorker(address)
    await worker.connect(register)
    task = await client.create_task(name="t", executor="raw_job")
    await client.execute_task(task.id)
    assignment = (await worker.receive()).assignment
    await worker.close()
    again = RawWorker(address)
    await again.connect(register)  # the same worker id: its lease is still held
    again.complete(assignment, 42)
    assert (await again.receive()).acknowledged.accepted
    async with asyncio.timeout(10):
        done = await client.wait(task.id)
    assert (done.status, done.result, done.attempt) == ("completed", 42, 1)
    await again.close()


async def test_declared_executors_wait_for_a_worker(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    declared = tmp_path / "executors.json"
    schema = {"type": "object", "required": ["n"]}
    declared.write_text(json.dumps([{"id": "later", "description": "d", "input_schema": schema}]))
    server = await make_server(executors_file=str(declared))
    client = make_server.client(server)
    with pytest.raises(Exception, match="UNKNOWN_EXECUTOR"):
        await client.create_task(name="x", executor="never_registered")
    task = await client.create_task(name="t", executor="later", inputs={"n": 1})
    await client.execute_task(task.id)
    await asyncio.sleep(0.2)
    explanation = await client.explain_task(task.id)
    assert (await client.get_task(task.id)).status == "pending"
    assert "NO_WORKER" in explanation.reasons
    assert "later" in explanation.summary
    worker = RawWorker(f"127.0.0.1:{server.port}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # another schema than declared
        await worker.connect(registration({"later": {"type": "object"}}))
    assert reason_of(refused.value) == "EXECUTOR_CONFLICT"
    await worker.close()
    worker = RawWorker(f"127.0.0.1:{server.port}")
    await worker.connect(registration({"later": schema}))
    assignment = (await worker.receive()).assignment
    assert wire.from_struct(assignment.inputs) == {"n": 1}
    worker.complete(assignment, "done")
    async with asyncio.timeout(10):
        assert (await client.wait(task.id)).result == "done"
    await worker.close()


async def test_registered_executors_are_remembered_across_a_restart(
    make_server: ServerFactory, db_url: str
) -> None:
    server = await make_server(db_url=db_url)
    worker = RawWorker(f"127.0.0.1:{server.port}")
    await worker.connect(registration({"kept": {"type": "object", "required": ["k"]}}))
    await worker.close()
    await make_server.stop(server)
    again = await make_server(db_url=db_url)
    client = make_server.client(again)
    kept = {e.id: e for e in await client.list_executors()}["kept"]
    assert kept.remote and kept.workers == () and kept.input_schema["required"] == ["k"]
    with pytest.raises(Exception, match="INVALID_INPUTS"):
        await client.create_task(name="t", executor="kept", inputs={})
    task = await client.create_task(name="t", executor="kept", inputs={"k": 1})
    await client.execute_task(task.id)
    assert "NO_WORKER" in (await client.explain_task(task.id)).reasons


async def test_without_local_executors_nothing_runs_in_the_server(
    make_server: ServerFactory,
) -> None:
    server = await make_server(local_executors=False)
    client = make_server.client(server)
    assert await client.list_executors() == []
    worker = RawWorker(f"127.0.0.1:{server.port}")
    # With no built-in of that name, a worker may serve it.
    await worker.connect(registration({"sleep_executor": {"type": "object"}}))
    task = await client.create_task(name="s", executor="sleep_executor")
    await client.execute_task(task.id)
    worker.complete((await worker.receive()).assignment, "slept elsewhere")
    async with asyncio.timeout(10):
        assert (await client.wait(task.id)).result == "slept elsewhere"
    await worker.close()


async def test_outcomes_sent_as_one_batch_each_count(
    server: TaskgroveServer, client: AsyncClient
) -> None:
    worker = RawWorker(f"127.0.0.1:{server.port}")
    await worker.connect(registration(slots=4))
    tasks = [{"id": "root", "name": "root"}] + [
        {"id": f"t{i}", "name": f"t{i}", "parent_id": "root", "executor": "raw_job"}
        for i in range(4)
    ]
    created = await client.create_task_tree(tasks, execute=True)
    assigned = await worker.assignments(4)
    assert sorted(a.task_id for a in assigned) == sorted(
        task.id for key, task in created.items() if key != "root"
    )
    batch = pb.OutcomeBatch(
        outcomes=[
            pb.AttemptOutcome(
                lease_id=a.lease_id,
                fencing_token=a.fencing_token,
                result=wire.to_value({"name": a.name}),
            )
            for a in assigned
        ]
        # The same outcome twice in a batch: the second is stale.
        + [
            pb.AttemptOutcome(
                lease_id=assigned[0].lease_id,
                fencing_token=assigned[0].fencing_token,
                result=wire.to_value("again"),
            )
        ]
    )
    worker.send(pb.ConnectRequest(outcomes=batch))
    acks = await worker.acknowledgements(5)
    assert [ack.lease_id for ack in acks] == [a.lease_id for a in assigned] + [assigned[0].lease_id]
    assert [ack.accepted for ack in acks] == [True] * 4 + [False]
    assert acks[4].reason == "STALE_LEASE"
    async with asyncio.timeout(10):
        root = await client.wait(created["root"].id)
    assert root.status == "completed"
    for key, task in created.items():
        if key != "root":
            assert (await client.get_task(task.id)).result == {"name": key}
    await worker.close()


async def test_a_cancel_made_while_a_worker_was_away_reaches_it_when_it_reconnects(
    make_server: ServerFactory,
) -> None:
    server = await make_server(worker_lease_seconds=30)
    client = make_server.client(server)
    address = f"127.0.0.1:{server.port}"
    register = registration(slots=1)
    away = RawWorker(address)
    await away.connect(register)
    task = await client.create_task(name="t", executor="raw_job")
    await client.execute_task(task.id)
    (assignment,) = await away.assignments(1)
    await away.close()  # the stream breaks; the worker will be back within its lease
    await client.cancel_task(task.id)
    assert (await client.get_task(task.id)).status == "cancelled"
    back = RawWorker(address)
    assert (await back.connect(register)).WhichOneof("kind") == "registered"
    told = (await back.receive()).cancel
    assert (told.lease_id, told.reason) == (assignment.lease_id, "CANCELLED")
    back.send(
        pb.ConnectRequest(
            outcome=pb.AttemptOutcome(
                lease_id=assignment.lease_id,
                fencing_token=assignment.fencing_token,
                cancelled=pb.AttemptCancelled(),
            )
        )
    )
    assert (await back.acknowledgements(1))[0].accepted
    assert await free_slots(client) == {"raw": 1}  # its slot is free again
    assert (await client.get_task(task.id)).status == "cancelled"
    await back.close()
