"""Authentication and ownership through a real server (DESIGN 8): every TaskService RPC
for every kind of caller, with "nothing changed" wherever a call is refused.

Bob owns a stored tree (a group and a leaf, not executed). Each caller then sends every
RPC at Bob's tasks; the expected answer depends only on who calls:

- no token, a bad token, an expired JWT: UNAUTHENTICATED, each with its own reason;
- a worker: PERMISSION_DENIED (ROLE_NOT_PERMITTED) on every TaskService call;
- a reader: reads answer, writes are PERMISSION_DENIED;
- Alice (another user): Bob's tasks are NOT_FOUND, exactly as absent ones;
- an admin: every call is served.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import string
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ServerFactory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.credentials import TOKENS, AuthFiles, JwtSigner, tokens_toml, write_auth_files
from support.status_details import describe, error_info
from support.waiting import until
from taskgrove.domain import reasons
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, worker_service_pb2_grpc
from taskgrove.v1 import worker_service_pb2 as worker_pb
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.testing import ServerProcess

TaskService = task_service_pb2_grpc.TaskServiceStub
CALL_TIMEOUT = 10.0


@dataclass
class BobsTree:
    root: str
    leaf: str
    spare: str
    """Another root of Bob's, for DeleteTask (the admin's run deletes it last)."""


def metadata_of(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


class Caller:
    """A raw stub that sends one caller's credentials with every call."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None) -> None:
        self.stub = TaskService(channel)
        self.metadata = metadata_of(token)

    async def call(self, method: str, request: Message) -> Message:
        """The reply (for WatchEvents: its first message); raises AioRpcError."""
        rpc = getattr(self.stub, method)
        if method in STREAMS:
            stream = rpc(request, metadata=self.metadata)
            try:
                first: Message = await asyncio.wait_for(stream.read(), CALL_TIMEOUT)
                return first
            finally:
                stream.cancel()
        reply: Message = await rpc(request, metadata=self.metadata, timeout=CALL_TIMEOUT)
        return reply

    async def error_of(self, method: str, request: Message) -> grpc.aio.AioRpcError | None:
        try:
            await self.call(method, request)
        except grpc.aio.AioRpcError as error:
            return error
        return None


def update_priority(task_id: str) -> task_service_pb2.UpdateTaskRequest:
    request = task_service_pb2.UpdateTaskRequest(task=task_pb2.Task(id=task_id, priority=3))
    request.update_mask.paths.append("priority")
    return request


REQUESTS: dict[str, Callable[[BobsTree], Message]] = {
    "CreateTask": lambda bob: task_service_pb2.CreateTaskRequest(
        task=task_pb2.Task(name="sleep_executor", parent_id=bob.root)
    ),
    "CreateTaskTree": lambda bob: task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_pb2.Task(id="new", name="sleep_executor", parent_id=bob.root)]
    ),
    "GetTask": lambda bob: task_service_pb2.GetTaskRequest(id=bob.leaf),
    "GetTaskTree": lambda bob: task_service_pb2.GetTaskTreeRequest(id=bob.root),
    "ListTasks": lambda bob: task_service_pb2.ListTasksRequest(user_id="bob"),
    "ListExecutors": lambda bob: task_service_pb2.ListExecutorsRequest(),
    "ExplainTask": lambda bob: task_service_pb2.ExplainTaskRequest(id=bob.leaf),
    "WatchEvents": lambda bob: task_service_pb2.WatchEventsRequest(
        root_id=bob.root, include_snapshot=True
    ),
    "UpdateTask": lambda bob: update_priority(bob.leaf),
    "CopyTaskTree": lambda bob: task_service_pb2.CopyTaskTreeRequest(id=bob.root),
    "CancelTask": lambda bob: task_service_pb2.CancelTaskRequest(id=bob.root),
    "RetryTask": lambda bob: task_service_pb2.RetryTaskRequest(id=bob.root),
    "ExecuteTask": lambda bob: task_service_pb2.ExecuteTaskRequest(id=bob.root),
    "DeleteTask": lambda bob: task_service_pb2.DeleteTaskRequest(id=bob.spare),
    "StreamTaskLogs": lambda bob: task_service_pb2.StreamTaskLogsRequest(task_id=bob.leaf),
}
"""Every TaskService RPC, aimed at Bob's tasks (in an order an admin can run them)."""

READS = {
    "GetTask",
    "GetTaskTree",
    "ListTasks",
    "ListExecutors",
    "ExplainTask",
    "WatchEvents",
    "StreamTaskLogs",
}
STREAMS = {"WatchEvents", "StreamTaskLogs"}
"""Answered by a stream: a call is its first message (or its end)."""


def test_every_rpc_is_in_the_matrix() -> None:
    service = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
    assert set(REQUESTS) == {method.name for method in service.methods}
    assert set(REQUESTS) >= READS


@dataclass
class World:
    server: TaskgroveServer
    files: AuthFiles
    channel: grpc.aio.Channel
    bob: BobsTree

    def as_user(self, user: str) -> Caller:
        return Caller(self.channel, TOKENS[user][0])

    def with_token(self, token: str | None) -> Caller:
        return Caller(self.channel, token)

    async def stored(self) -> list[bytes]:
        """Every stored task as the admin sees it (ids, statuses, etags, times)."""
        reply = await self.as_user("ada").call(
            "ListTasks", task_service_pb2.ListTasksRequest(page_size=1000)
        )
        assert isinstance(reply, task_service_pb2.ListTasksResponse)
        return sorted(task.SerializeToString(deterministic=True) for task in reply.tasks)


@pytest.fixture
async def world(make_server: ServerFactory, tmp_path: Path) -> AsyncIterator[World]:
    files = write_auth_files(tmp_path)
    server = await make_server(**files.server_config())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        bob = Caller(channel, TOKENS["bob"][0])
        spare = await bob.call(
            "CreateTask", task_service_pb2.CreateTaskRequest(task=task_pb2.Task(name="root_task"))
        )
        assert isinstance(spare, task_pb2.Task) and spare.user_id == "bob"
        reply = await bob.call(
            "CreateTaskTree",
            task_service_pb2.CreateTaskTreeRequest(
                tasks=[
                    task_pb2.Task(id="root", name="root_task"),
                    task_pb2.Task(id="leaf", name="sleep_executor", parent_id="root"),
                ]
            ),
        )
        assert isinstance(reply, task_service_pb2.CreateTaskTreeResponse)
        assert {task.user_id for task in reply.tasks} == {"bob"}
        tree = BobsTree(reply.task_ids["root"], reply.task_ids["leaf"], spare.id)
        yield World(server, files, channel, tree)


async def assert_refused_everywhere(
    world: World, caller: Caller, expected: Callable[[str], tuple[grpc.StatusCode, str] | None]
) -> None:
    """Send every RPC; each answers as `expected(method)` says (None: served), and the
    stored tasks are exactly as before."""
    before = await world.stored()
    for method, make in REQUESTS.items():
        error = await caller.error_of(method, make(world.bob))
        wanted = expected(method)
        if wanted is None:
            assert error is None, f"{method}: {describe(error)}"
            continue
        assert error is not None, f"{method} was served"
        code, reason = wanted
        assert (error.code(), error_info(error)[0]) == (code, reason), (
            f"{method}: {describe(error)}"
        )
    assert await world.stored() == before


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        ("none", reasons.AUTHENTICATION_REQUIRED),
        ("bad token", reasons.INVALID_CREDENTIALS),
        ("expired JWT", reasons.CREDENTIALS_EXPIRED),
        ("JWT of another key", reasons.INVALID_CREDENTIALS),
    ],
)
async def test_unauthenticated_callers_are_refused_every_call(
    world: World, credential: str, reason: str
) -> None:
    token = {
        "none": None,
        "bad token": "not-a-token",
        # Past the verifier's leeway for clock skew.
        "expired JWT": world.files.signer.token("alice", expires_in=-120),
        "JWT of another key": JwtSigner.new().token("alice"),
    }[credential]
    await assert_refused_everywhere(
        world,
        world.with_token(token),
        lambda _method: (grpc.StatusCode.UNAUTHENTICATED, reason),
    )


async def test_a_worker_may_not_call_the_task_service(world: World) -> None:
    await assert_refused_everywhere(
        world,
        world.as_user("wendy"),
        lambda _method: (grpc.StatusCode.PERMISSION_DENIED, reasons.ROLE_NOT_PERMITTED),
    )


async def test_a_reader_reads_everything_and_writes_nothing(world: World) -> None:
    await assert_refused_everywhere(
        world,
        world.as_user("rita"),
        lambda method: (
            None
            if method in READS
            else (grpc.StatusCode.PERMISSION_DENIED, reasons.ROLE_NOT_PERMITTED)
        ),
    )
    tree = await world.as_user("rita").call(
        "GetTaskTree", task_service_pb2.GetTaskTreeRequest(id=world.bob.root)
    )
    assert isinstance(tree, task_service_pb2.GetTaskTreeResponse)
    assert {task.id for task in tree.tasks} == {world.bob.root, world.bob.leaf}


def as_if_absent(method: str) -> tuple[grpc.StatusCode, str] | None:
    if method in ("CreateTask", "CreateTaskTree"):
        return grpc.StatusCode.NOT_FOUND, reasons.PARENT_NOT_FOUND
    if method == "ListTasks":  # it asks for user_id="bob"
        return grpc.StatusCode.PERMISSION_DENIED, reasons.USER_ID_NOT_CALLER
    if method == "ListExecutors":
        return None
    return grpc.StatusCode.NOT_FOUND, reasons.TASK_NOT_FOUND  # WatchEvents of Bob's tree too


async def test_another_users_tasks_answer_as_absent(world: World) -> None:
    alice = world.as_user("alice")
    await assert_refused_everywhere(world, alice, as_if_absent)
    # The same answers with Alice's JWT instead of her token.
    await assert_refused_everywhere(
        world, world.with_token(world.files.signer.token("alice")), as_if_absent
    )
    # A task id that does not exist answers exactly like Bob's.
    for method in ("GetTask", "CancelTask", "DeleteTask", "WatchEvents"):
        missing = await alice.error_of(method, REQUESTS[method](BobsTree("nope", "nope", "nope")))
        theirs = await alice.error_of(method, REQUESTS[method](world.bob))
        assert missing is not None and theirs is not None
        assert (missing.code(), error_info(missing)[0]) == (theirs.code(), error_info(theirs)[0])
    # Nor can Alice depend on Bob's leaf.
    depends = task_service_pb2.CreateTaskRequest(
        task=task_pb2.Task(name="sleep_executor", dependencies=[{"id": world.bob.leaf}])
    )
    error = await alice.error_of("CreateTask", depends)
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, describe(error)
    assert error_info(error)[0] == reasons.DEPENDENCY_NOT_FOUND


async def test_an_admin_is_served_every_call(world: World) -> None:
    ada = world.as_user("ada")
    for method, make in REQUESTS.items():
        error = await ada.error_of(method, make(world.bob))
        assert error is None, f"{method}: {describe(error)}"
    # What the admin created under Bob's tree is Bob's.
    listed = await ada.call("ListTasks", task_service_pb2.ListTasksRequest(page_size=1000))
    assert isinstance(listed, task_service_pb2.ListTasksResponse)
    assert {task.user_id for task in listed.tasks} == {"bob"}


async def connect_worker(world: World, token: str | None) -> worker_pb.ConnectResponse:
    """Open a worker stream with `token` and register; the first answer (or AioRpcError)."""
    stub = worker_service_pb2_grpc.WorkerServiceStub(world.channel)
    register = worker_pb.ConnectRequest(
        register=worker_pb.WorkerRegistration(
            worker_id=str(uuid.uuid4()),
            name="w",
            slots=1,
            executors=[worker_pb.WorkerExecutor(id="auth_job")],
        )
    )

    async def requests() -> AsyncIterator[worker_pb.ConnectRequest]:
        yield register
        await asyncio.sleep(CALL_TIMEOUT)

    call = stub.Connect(requests(), metadata=metadata_of(token))
    try:
        first = await asyncio.wait_for(call.read(), CALL_TIMEOUT)
        assert isinstance(first, worker_pb.ConnectResponse)
        return first
    finally:
        call.cancel()


@pytest.mark.parametrize(
    ("user", "served"),
    [("wendy", True), ("ada", True), ("alice", False), ("rita", False), (None, False)],
)
async def test_only_workers_and_admins_may_connect_a_worker(
    world: World, user: str | None, served: bool
) -> None:
    token = TOKENS[user][0] if user is not None else None
    if served:
        answer = await connect_worker(world, token)
        assert answer.WhichOneof("kind") == "registered"
        return
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await connect_worker(world, token)
    if user is None:
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(refused.value)[0] == reasons.AUTHENTICATION_REQUIRED
    else:
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value)[0] == reasons.ROLE_NOT_PERMITTED
    executors = await world.as_user("ada").call(
        "ListExecutors", task_service_pb2.ListExecutorsRequest()
    )
    assert isinstance(executors, task_service_pb2.ListExecutorsResponse)
    assert "auth_job" not in {executor.id for executor in executors.executors}


# ------------------------------------------------------------------ owners from identity


async def create(caller: Caller, **fields: Any) -> task_pb2.Task:
    reply = await caller.call(
        "CreateTask", task_service_pb2.CreateTaskRequest(task=task_pb2.Task(**fields))
    )
    assert isinstance(reply, task_pb2.Task)
    return reply


async def test_the_owner_is_the_caller(world: World) -> None:
    alice = world.as_user("alice")
    mine = await create(alice, name="sleep_executor")
    assert mine.user_id == "alice"
    assert (await create(alice, name="sleep_executor", user_id="alice")).user_id == "alice"
    before = await world.stored()
    error = await alice.error_of(
        "CreateTask",
        task_service_pb2.CreateTaskRequest(
            task=task_pb2.Task(name="sleep_executor", user_id="bob")
        ),
    )
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, describe(error)
    assert error_info(error)[0] == reasons.USER_ID_NOT_CALLER
    tree = task_service_pb2.CreateTaskTreeRequest(
        tasks=[
            task_pb2.Task(id="r", name="root_task"),
            task_pb2.Task(id="c", name="sleep_executor", parent_id="r", user_id="bob"),
        ]
    )
    error = await alice.error_of("CreateTaskTree", tree)
    assert error is not None and error_info(error)[0] == reasons.USER_ID_NOT_CALLER
    assert await world.stored() == before

    listed = await alice.call("ListTasks", task_service_pb2.ListTasksRequest())
    assert isinstance(listed, task_service_pb2.ListTasksResponse)
    assert {task.user_id for task in listed.tasks} == {"alice"}
    # An admin chooses the owner of what it creates; without one, it is the admin's own.
    ada = world.as_user("ada")
    assert (await create(ada, name="sleep_executor", user_id="alice")).user_id == "alice"
    assert (await create(ada, name="sleep_executor")).user_id == "ada"


async def test_request_ids_are_per_caller(world: World) -> None:
    def request(name: str) -> task_service_pb2.CreateTaskRequest:
        return task_service_pb2.CreateTaskRequest(
            task=task_pb2.Task(name=name), request_id="same-id"
        )

    alice, bob = world.as_user("alice"), world.as_user("bob")
    first = await alice.call("CreateTask", request("sleep_executor"))
    # Bob's same id is his own request (neither a replay of Alice's nor a conflict).
    theirs = await bob.call("CreateTask", request("root_task"))
    assert isinstance(first, task_pb2.Task) and isinstance(theirs, task_pb2.Task)
    assert theirs.id != first.id and theirs.user_id == "bob"
    again = await alice.call("CreateTask", request("sleep_executor"))
    assert isinstance(again, task_pb2.Task) and again.id == first.id


async def test_watch_streams_per_caller_are_limited(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    files = write_auth_files(tmp_path)
    server = await make_server(**files.server_config(), max_watchers_per_caller=2)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        alice, bob = Caller(channel, TOKENS["alice"][0]), Caller(channel, TOKENS["bob"][0])
        request = task_service_pb2.WatchEventsRequest(include_snapshot=True)
        held = [alice.stub.WatchEvents(request, metadata=alice.metadata) for _ in range(2)]
        for stream in held:
            await asyncio.wait_for(stream.read(), CALL_TIMEOUT)
        error = await alice.error_of("WatchEvents", request)
        assert error is not None
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(error)
        # Another caller is not affected, and a closed stream frees its slot.
        assert await bob.error_of("WatchEvents", request) is None
        held.pop().cancel()
        await until_served(alice, request)
        for stream in held:
            stream.cancel()


async def until_served(caller: Caller, request: Message) -> None:
    """The server notices a cancelled stream shortly after: wait (bounded) for the slot."""
    last: list[grpc.aio.AioRpcError | None] = []

    async def served() -> bool:
        last.append(await caller.error_of("WatchEvents", request))
        return last[-1] is None

    for _ in range(100):
        if await served():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the slot never freed: {describe(last[-1])}")


async def test_health_needs_no_credentials(world: World) -> None:
    health = health_pb2_grpc.HealthStub(world.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# ------------------------------------------------------------------ JWTs


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"issuer": "https://other.test"}, reasons.INVALID_CREDENTIALS),
        ({"audience": "someone-else"}, reasons.INVALID_CREDENTIALS),
        ({"expires_in": -120}, reasons.CREDENTIALS_EXPIRED),
    ],
)
async def test_jwt_claims_are_checked(world: World, change: dict[str, Any], reason: str) -> None:
    token = world.files.signer.token("alice", **change)
    error = await world.with_token(token).error_of(
        "ListExecutors", task_service_pb2.ListExecutorsRequest()
    )
    assert error is not None
    assert (error.code(), error_info(error)[0]) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_a_jwt_names_the_caller_and_its_roles(world: World) -> None:
    signer = world.files.signer
    alice = world.with_token(signer.token("alice"))
    assert (await create(alice, name="sleep_executor")).user_id == "alice"
    reader = world.with_token(signer.token("carol", roles=["reader"]))
    error = await reader.error_of("CreateTask", REQUESTS["CreateTask"](world.bob))
    assert error is not None and error_info(error)[0] == reasons.ROLE_NOT_PERMITTED
    assert await reader.error_of("GetTask", REQUESTS["GetTask"](world.bob)) is None


async def test_an_unsigned_jwt_is_refused(world: World) -> None:
    unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZGEifQ."  # alg none, sub ada
    error = await world.with_token(unsigned).error_of(
        "ListTasks", task_service_pb2.ListTasksRequest()
    )
    assert error is not None
    assert error_info(error)[0] == reasons.INVALID_CREDENTIALS


# ------------------------------------------------------------------ fuzz


def random_metadata(rng: random.Random) -> list[tuple[str, str]]:
    printable = string.ascii_letters + string.digits + string.punctuation + " "
    kind = rng.randrange(6)
    junk = "".join(rng.choice(printable) for _ in range(rng.randrange(0, 300))).strip()
    if kind == 0:
        return [("authorization", junk)]
    if kind == 1:
        return [("authorization", f"Bearer {junk}")]
    if kind == 2:
        return [("authorization", f"{rng.choice(['bearer', 'Basic', 'BEARER', 'Token'])} {junk}")]
    if kind == 3:  # several headers, one of them a real token
        return [("authorization", f"Bearer {TOKENS['ada'][0]}"), ("authorization", junk)]
    if kind == 4:  # a long JWT-looking string
        parts = ("".join(rng.choice(string.ascii_letters) for _ in range(rng.randrange(900))),) * 3
        return [("authorization", "Bearer " + ".".join(parts))]
    # Long, within gRPC's own 8 KiB bound on a call's metadata.
    return [("authorization", "Bearer " + "x" * rng.randrange(4_000, 7_000))]


async def test_random_credentials_are_refused_and_the_server_keeps_serving(
    world: World,
) -> None:
    rng = random.Random(20261205)
    stub = TaskService(world.channel)
    before = await world.stored()
    for _ in range(300):
        metadata = random_metadata(rng)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateTask(
                task_service_pb2.CreateTaskRequest(task=task_pb2.Task(name="sleep_executor")),
                metadata=metadata,
                timeout=CALL_TIMEOUT,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (
            f"{metadata!r:.200}: {describe(refused.value)}"
        )
        assert error_info(refused.value)[0] in (
            reasons.AUTHENTICATION_REQUIRED,
            reasons.INVALID_CREDENTIALS,
        )
    # Beyond that bound, gRPC itself refuses the call before the server's code runs.
    with pytest.raises(grpc.aio.AioRpcError) as oversized:
        await stub.ListExecutors(
            task_service_pb2.ListExecutorsRequest(),
            metadata=[("authorization", "Bearer " + "x" * 20_000)],
            timeout=CALL_TIMEOUT,
        )
    assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await world.stored() == before
    assert (await create(world.as_user("alice"), name="sleep_executor")).user_id == "alice"


# ------------------------------------------------------------------ the tokens file


async def served(address: str, token: str) -> bool:
    """Whether `token` is accepted (refused: UNAUTHENTICATED; anything else fails)."""
    async with grpc.aio.insecure_channel(address) as channel:
        error = await Caller(channel, token).error_of(
            "ListExecutors", task_service_pb2.ListExecutorsRequest()
        )
    if error is not None and error.code() != grpc.StatusCode.UNAUTHENTICATED:
        raise AssertionError(describe(error))
    return error is None


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 10.0) -> None:
    """Until `check()` is true (a signal is handled shortly after it is sent)."""
    async with asyncio.timeout(limit_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_sighup_reloads_the_tokens_file(db_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml({"alice": TOKENS["alice"]}))
    with ServerProcess(db_url, extra_env={"TASKGROVE_TOKENS_FILE": str(tokens)}) as process:
        assert await served(process.address, TOKENS["alice"][0])
        assert not await served(process.address, "new-token-9999")

        new = hashlib.sha256(b"new-token-9999").hexdigest()
        tokens.write_text(f'[[token]]\nsha256 = "{new}"\nuser = "nina"\n')
        os.kill(process.pid, signal.SIGHUP)
        await eventually(lambda: served(process.address, "new-token-9999"))
        assert not await served(process.address, TOKENS["alice"][0])

        # A broken file is refused: the tokens in force stay.
        tokens.write_text("[[token]]\nuser = 3\n")
        os.kill(process.pid, signal.SIGHUP)
        await until(lambda: "not reloaded" in process.log_tail(), 10)
        assert await served(process.address, "new-token-9999")


def test_serve_refuses_a_bad_tokens_file_in_one_line(db_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[[token]]\ntoken = "t-0123456789abcdef"\nuser = "u"\nroles = ["superuser"]\n'
    )
    command = ServerProcess(db_url).command()
    env = {**os.environ, "TASKGROVE_TOKENS_FILE": str(tokens)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "superuser" in lines[0], result.stderr
    assert not result.stdout
