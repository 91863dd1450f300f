"""Values the database or protobuf could refuse are bounded at the API (issue "Write-path
failures"), through a real server and database.

Every refusal is INVALID_ARGUMENT (or the code named) with its stable ErrorInfo reason and
the field path of the violation, and changes nothing: ListTasks reads the same afterwards.
Requests the SDK can express go through `AsyncClient`; the rest through the raw stub, or a
raw channel with identity serializers for bytes that are not a valid request.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from support.status_details import describe, error_info, raw, status_trailers
from support.waiting import wait_finished
from taskgrove import AsyncClient, InvalidArgumentError, Task, TaskgroveError, task_message
from taskgrove.domain import reasons, wire
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.executors import ExecutionContext, Executor, ExecutorError, ExecutorRegistry

if TYPE_CHECKING:
    from conftest import ServerFactory

INVALID = grpc.StatusCode.INVALID_ARGUMENT
METHOD = "/taskgrove.v1.TaskService/"
MIB = 1024 * 1024
DAY = timedelta(days=1)
METADATA_BUDGET = 16 * 1024
"""gRPC's default limit on a response's metadata (the status details travel there)."""


# --------------------------------------------------------------------------- helpers


async def stored(client: AsyncClient) -> list[task_pb2.Task]:
    """Every stored task (all owners), as ListTasks returns it."""
    reply = await client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000))
    assert not reply.next_page_token
    return list(reply.tasks)


async def refused(
    call: Awaitable[Any],
    reason: str,
    field: str | None = None,
    code: grpc.StatusCode = INVALID,
) -> grpc.aio.AioRpcError:
    """A raw call fails with `code` and `reason` (and a violation of `field`)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    got, _, fields = error_info(error)
    assert (error.code(), got) == (code, reason), describe(error)
    if field is not None:
        assert field in fields, (field, fields)
    # The details arrived whole, within gRPC's metadata budget.
    assert sum(len(value) for value in status_trailers(error)) < METADATA_BUDGET
    return error


async def sdk_refused(call: Awaitable[Any], reason: str, field: str) -> TaskgroveError:
    """An SDK call fails with InvalidArgumentError, `reason`, and a violation of `field`
    (or of a value inside it: `task.inputs.a[2]` is inside `task.inputs`)."""
    with pytest.raises(InvalidArgumentError) as caught:
        await call
    error = caught.value
    assert error.reason == reason, error
    fields = [v.field for v in error.field_violations]
    assert any(f == field or f.startswith((f"{field}.", f"{field}[")) for f in fields), fields
    return error


def create_request(**task: Any) -> task_service_pb2.CreateTaskRequest:
    return task_service_pb2.CreateTaskRequest(task=task_message(**task))


def tree_request(*tasks: dict[str, Any]) -> task_service_pb2.CreateTaskTreeRequest:
    return task_service_pb2.CreateTaskTreeRequest(tasks=[task_message(**task) for task in tasks])


# Hand-encoded protobuf (for what the Python runtime will not build or send).


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested_lists(levels: int) -> bytes:
    """A google.protobuf.Value holding `levels` lists inside each other around 1.0."""
    value = b"\x11" + struct.pack("<d", 1.0)  # number_value = 2 (double)
    for _ in range(levels):
        value = length_delimited(6, length_delimited(1, value))  # list_value{values}
    return value


def nested_object(levels: int) -> dict[str, Any]:
    """`levels` + 1 objects inside each other."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def nested_list(levels: int) -> dict[str, Any]:
    """An object holding `levels` + 1 lists inside each other."""
    value: list[Any] = [1]
    for _ in range(levels):
        value = [value]
    return {"l": value}


@pytest.fixture
async def channel(client: AsyncClient) -> AsyncIterator[grpc.aio.Channel]:
    """A raw channel to the server: calls made on it without serializers send bytes."""
    async with grpc.aio.insecure_channel(client.address) as raw:
        yield raw


# --------------------------------------------------------------------------- JSON values


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["inputs", "params"])
async def test_non_finite_numbers_are_refused(
    client: AsyncClient, where: str, number: float
) -> None:
    value = {"ok": 1.5, "deep": {"list": [0, number]}}
    error = await sdk_refused(
        client.create_task(name="a group", **{where: value}),
        reasons.INVALID_JSON_VALUE,
        f"task.{where}",
    )
    assert [v.field for v in error.field_violations] == [f"task.{where}.deep.list[1]"]
    error = await sdk_refused(
        client.create_task_tree(
            [{"id": "r", "name": "root"}, {"id": "c", "name": "c", "parent_id": "r", where: value}]
        ),
        reasons.INVALID_JSON_VALUE,
        f"tasks[1].{where}",
    )
    assert [v.field for v in error.field_violations] == [f"tasks[1].{where}.deep.list[1]"]
    assert await stored(client) == []


@pytest.mark.parametrize("where", ["inputs", "params"])
@pytest.mark.parametrize("inside", [".resource", ".items[1]"], ids=["key", "list"])
async def test_a_value_with_no_kind_is_refused_naming_its_field(
    client: AsyncClient, channel: grpc.aio.Channel, where: str, inside: str
) -> None:
    # What a client sends for a value its library could not encode (e.g. grpc-js given
    # `{string_value: "cpu"}` where it expects `stringValue`): a Value with nothing set.
    # It is not null (that is null_value), and must not be stored as one.
    task = task_pb2.Task(name="system_info_executor")
    fields = getattr(task, where).fields
    if inside == ".resource":
        fields["resource"].SetInParent()
    else:
        fields["items"].list_value.values.add(string_value="fine")
        fields["items"].list_value.values.add().SetInParent()
    call = channel.unary_unary(
        METHOD + "CreateTask",
        request_serializer=task_service_pb2.CreateTaskRequest.SerializeToString,
        response_deserializer=task_pb2.Task.FromString,
    )
    error = await sdk_refused(
        raw(call(task_service_pb2.CreateTaskRequest(task=task), timeout=10)),
        reasons.INVALID_JSON_VALUE,
        f"task.{where}",
    )
    [violation] = error.field_violations
    assert violation.field == f"task.{where}{inside}"
    assert "no kind set" in violation.description
    assert await stored(client) == []


async def test_nesting_up_to_the_limit_is_accepted_and_read_back(client: AsyncClient) -> None:
    # MAX_JSON_DEPTH objects (or lists) inside each other is the most that is accepted.
    deepest = nested_object(wire.MAX_JSON_DEPTH - 1)
    lists = nested_list(wire.MAX_JSON_DEPTH - 2)
    task = await client.create_task(name="a group", inputs=deepest, params=lists)
    again = await client.get_task(task.id)
    assert (again.inputs, again.params) == (deepest, lists)


@pytest.mark.parametrize("where", ["inputs", "params"])
async def test_nesting_deeper_than_the_limit_is_refused(client: AsyncClient, where: str) -> None:
    for value in (nested_object(wire.MAX_JSON_DEPTH), nested_list(wire.MAX_JSON_DEPTH - 1)):
        error = await sdk_refused(
            client.create_task(name="a group", **{where: value}),
            reasons.INVALID_JSON_VALUE,
            f"task.{where}",
        )
        assert str(wire.MAX_JSON_DEPTH) in error.field_violations[0].description
    # Lists nest more cheaply than objects in protobuf: far deeper still decodes.
    await sdk_refused(
        client.create_task(name="a group", **{where: nested_list(40)}),
        reasons.INVALID_JSON_VALUE,
        f"task.{where}",
    )
    assert await stored(client) == []


@pytest.mark.parametrize("method", ["CreateTask", "CreateTaskTree"])
async def test_nesting_protobuf_cannot_decode_is_a_malformed_request(
    client: AsyncClient, channel: grpc.aio.Channel, method: str
) -> None:
    # 200 nested lists: beyond protobuf's own recursion limit (the SDK cannot even build it).
    entry = length_delimited(1, b"deep") + length_delimited(2, nested_lists(200))
    inputs = length_delimited(1, entry)  # Struct.fields
    task = length_delimited(5, b"a group") + length_delimited(9, inputs)
    request = length_delimited(1, task)  # CreateTaskRequest.task / CreateTaskTreeRequest.tasks
    await refused(channel.unary_unary(METHOD + method)(request), reasons.MALFORMED_REQUEST)
    assert await stored(client) == []


@pytest.mark.parametrize("where", ["inputs", "params"])
async def test_values_over_one_mib_are_refused(client: AsyncClient, where: str) -> None:
    value = {"blob": "x" * MIB}
    await sdk_refused(
        client.create_task(name="a group", **{where: value}),
        reasons.VALUE_TOO_LARGE,
        f"task.{where}",
    )
    await sdk_refused(
        client.create_task_tree(
            [{"id": "r", "name": "root"}, {"id": "c", "name": "c", "parent_id": "r", where: value}]
        ),
        reasons.VALUE_TOO_LARGE,
        f"tasks[1].{where}",
    )
    assert await stored(client) == []


# --------------------------------------------------------------------------- durations

DURATION_FIELDS = [
    ("timeout", reasons.INVALID_TIMEOUT),
    ("retry_backoff", reasons.INVALID_RETRY_POLICY),
]


@pytest.mark.parametrize(("field", "reason"), DURATION_FIELDS)
@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**62, 0), (-(2**62), 0), (1, 2_000_000_000), (1, -1), (0, -1_000_000_000)],
    ids=["2^62s", "-2^62s", "nanos-too-large", "mixed-signs", "nanos-out-of-range"],
)
async def test_durations_out_of_range_are_refused(
    client: AsyncClient, field: str, reason: str, seconds: int, nanos: int
) -> None:
    task = task_message(name="sleep_executor")
    duration = getattr(task, field)
    duration.seconds, duration.nanos = seconds, nanos
    await refused(
        client.stub.CreateTask(task_service_pb2.CreateTaskRequest(task=task)),
        reason,
        f"task.{field}",
    )
    request = task_service_pb2.CreateTaskTreeRequest(tasks=[task])
    await refused(client.stub.CreateTaskTree(request), reason, f"tasks[0].{field}")
    assert await stored(client) == []


@pytest.mark.parametrize(("field", "reason"), DURATION_FIELDS)
async def test_update_to_a_duration_out_of_range_is_refused(
    client: AsyncClient, field: str, reason: str
) -> None:
    created = await client.create_task(name="sleep_executor")
    before = await stored(client)
    task = task_pb2.Task(id=created.id, name="sleep_executor")
    getattr(task, field).seconds = 2**62
    request = task_service_pb2.UpdateTaskRequest(task=task)
    request.update_mask.paths.append(field)
    await refused(client.stub.UpdateTask(request), reason, f"task.{field}")
    assert await stored(client) == before


async def test_long_durations_are_stored_and_read_back_exactly(client: AsyncClient) -> None:
    # 25 days is more milliseconds than a 32-bit integer holds; 366 days is the limit.
    lengths = [25 * DAY, 25 * DAY + timedelta(milliseconds=7), 366 * DAY]
    for length in lengths:
        task = await client.create_task(name="sleep_executor", timeout=length, retry_backoff=length)
        assert (task.timeout, task.retry_backoff) == (length, length)
        again = await client.get_task(task.id)
        assert (again.timeout, again.retry_backoff) == (length, length)
    listed = await stored(client)
    assert [t.timeout.ToTimedelta() for t in listed] == lengths
    assert [t.retry_backoff.ToTimedelta() for t in listed] == lengths
    count = len(listed)
    over = 366 * DAY + timedelta(milliseconds=1)
    await sdk_refused(
        client.create_task(name="sleep_executor", timeout=over),
        reasons.INVALID_TIMEOUT,
        "task.timeout",
    )
    await sdk_refused(
        client.create_task(name="sleep_executor", retry_backoff=over),
        reasons.INVALID_RETRY_POLICY,
        "task.retry_backoff",
    )
    assert len(await stored(client)) == count


# --------------------------------------------------------------------------- strings and ids


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"name": "sleep\x00executor"}, reasons.INVALID_STRING, "name"),
        ({"name": "a", "user_id": "al\x00ice"}, reasons.INVALID_USER_ID, "user_id"),
        ({"name": "a", "executor": "sleep_executor\x00"}, reasons.INVALID_STRING, "executor"),
    ],
    ids=["name", "user_id", "executor"],
)
async def test_nul_characters_are_refused(
    client: AsyncClient, fields: dict[str, str], reason: str, field: str
) -> None:
    await sdk_refused(client.create_task(**fields), reason, f"task.{field}")
    await sdk_refused(
        client.create_task_tree([{"id": "r", **fields}]),
        reason,
        f"tasks[0].{field}",
    )
    assert await stored(client) == []


async def test_a_one_mib_user_id_is_refused_at_once(client: AsyncClient) -> None:
    huge = "u" * MIB
    # A deadline bounds the call: the answer must not depend on the value's size.
    error = await refused(
        client.stub.CreateTask(create_request(name="sleep_executor", user_id=huge), timeout=15),
        reasons.INVALID_USER_ID,
        "task.user_id",
    )
    assert len(error.details()) <= 1000
    await refused(
        client.stub.CreateTaskTree(
            tree_request({"id": "r", "name": "r", "user_id": huge}), timeout=15
        ),
        reasons.INVALID_USER_ID,
        "tasks[0].user_id",
    )
    # In a child: its own violation, whatever else is wrong with it.
    await refused(
        client.stub.CreateTaskTree(
            tree_request(
                {"id": "r", "name": "r", "user_id": "u"},
                {"id": "c", "name": "sleep_executor", "parent_id": "r", "user_id": huge},
            ),
            timeout=15,
        ),
        reasons.INVALID_USER_ID,
        "tasks[1].user_id",
    )
    assert await stored(client) == []


@pytest.mark.parametrize("length", [256, MIB])
async def test_over_long_local_ids_are_refused(client: AsyncClient, length: int) -> None:
    long_id = "i" * length
    await refused(
        client.stub.CreateTaskTree(
            tree_request(
                {"id": "r", "name": "r"},
                {"id": long_id, "name": "sleep_executor", "parent_id": "r"},
            )
        ),
        reasons.INVALID_ID,
        "tasks[1].id",
    )
    # The top task's id, named as a parent by the others.
    error = await refused(
        client.stub.CreateTaskTree(
            tree_request(
                {"id": long_id, "name": "r"},
                {"id": "c", "name": "sleep_executor", "parent_id": long_id},
            )
        ),
        reasons.INVALID_ID,
        "tasks[0].id",
    )
    assert "tasks[1].parent_id" in error_info(error)[2]
    assert await stored(client) == []


@pytest.mark.parametrize("length", [256, MIB])
async def test_over_long_dependency_ids_are_refused(client: AsyncClient, length: int) -> None:
    long_id = "d" * length
    await refused(
        client.stub.CreateTask(create_request(name="sleep_executor", dependencies=[long_id])),
        reasons.INVALID_ID,
        "task.dependencies[0].id",
    )
    await refused(
        client.stub.CreateTaskTree(
            tree_request(
                {"id": "r", "name": "r"},
                {"id": "a", "name": "sleep_executor", "parent_id": "r"},
                {
                    "id": "b",
                    "name": "sleep_executor",
                    "parent_id": "r",
                    "dependencies": ["a", long_id],
                },
            )
        ),
        reasons.INVALID_ID,
        "tasks[2].dependencies[1].id",
    )
    assert await stored(client) == []


# --------------------------------------------------------------------------- page tokens


def forged(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


async def test_forged_page_tokens_are_refused(client: AsyncClient) -> None:
    for index in range(3):
        await client.create_task(name=f"t{index}")
    before = await stored(client)
    first = await client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1))
    genuine = json.loads(base64.urlsafe_b64decode(first.next_page_token))
    assert set(genuine) == {"after", "filters"}  # what a forger would start from

    tokens = {
        "after 2^70": forged({**genuine, "after": 2**70}),
        "after 2^63": forged({**genuine, "after": 2**63}),
        "negative": forged({**genuine, "after": -1}),
        "bool": forged({**genuine, "after": True}),
        "float": forged({**genuine, "after": 1.0}),
        "string": forged({**genuine, "after": "1"}),
        "no after": forged({"filters": genuine["filters"]}),
        "a list": forged([genuine["after"], genuine["filters"]]),
        "not json": base64.urlsafe_b64encode(b"\xff{not json").decode(),
        "not base64": "!!not base64!!",
        "10 KB": forged({**genuine, "pad": "x" * 10_000}),
    }
    for name, token in tokens.items():
        error = await refused(
            client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1, page_token=token)),
            reasons.INVALID_PAGE_TOKEN,
            "page_token",
        )
        assert len(error.details()) <= 1000, name
    # The genuine token still pages on.
    second = await client.stub.ListTasks(
        task_service_pb2.ListTasksRequest(page_size=1, page_token=first.next_page_token)
    )
    assert [t.id for t in (*first.tasks, *second.tasks)] == [t.id for t in before[:2]]
    assert await stored(client) == before


# --------------------------------------------------------------------------- WatchEvents


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**62, 0), (-1, 0), (0, -1), (3601, 0), (1, 1_000_000_000)],
    ids=["2^62s", "negative", "negative-nanos", "over-an-hour", "nanos-out-of-range"],
)
async def test_invalid_heartbeat_intervals_are_refused(
    client: AsyncClient, seconds: int, nanos: int
) -> None:
    request = task_service_pb2.WatchEventsRequest()
    request.heartbeat_interval.seconds, request.heartbeat_interval.nanos = seconds, nanos
    call = client.stub.WatchEvents(request)
    try:
        await refused(call.read(), reasons.INVALID_HEARTBEAT, "heartbeat_interval")
    finally:
        call.cancel()


# --------------------------------------------------------------------------- undecodable


NOT_PROTOBUF = b"\xff\xff\xff\xff"
BAD_UTF8 = b"ok\xff\xfe"


@pytest.mark.parametrize(
    ("method", "request_bytes"),
    [
        ("CreateTask", NOT_PROTOBUF),
        ("CreateTask", length_delimited(1, length_delimited(5, BAD_UTF8))),  # task.name
        ("CreateTaskTree", length_delimited(1, length_delimited(4, BAD_UTF8))),  # user_id
        ("GetTask", length_delimited(1, BAD_UTF8)),  # id
        ("ListTasks", length_delimited(6, BAD_UTF8)),  # user_id
    ],
    ids=["not-protobuf", "name-utf8", "tree-user-utf8", "get-id-utf8", "list-user-utf8"],
)
async def test_undecodable_unary_requests_are_malformed(
    client: AsyncClient, channel: grpc.aio.Channel, method: str, request_bytes: bytes
) -> None:
    error = await refused(
        channel.unary_unary(METHOD + method)(request_bytes), reasons.MALFORMED_REQUEST
    )
    assert "could not be decoded" in (error.details() or "")
    assert await stored(client) == []


@pytest.mark.parametrize(
    "request_bytes",
    [NOT_PROTOBUF, length_delimited(1, BAD_UTF8)],  # root_id
    ids=["not-protobuf", "root-id-utf8"],
)
async def test_undecodable_watch_requests_are_malformed(
    channel: grpc.aio.Channel, request_bytes: bytes
) -> None:
    call = channel.unary_stream(METHOD + "WatchEvents")(request_bytes)
    try:
        await refused(call.read(), reasons.MALFORMED_REQUEST)
    finally:
        call.cancel()


# --------------------------------------------------------------------------- large refusals


async def test_a_thousand_task_cycle_is_named_briefly(client: AsyncClient) -> None:
    n = 1000
    tasks = [{"id": "root", "name": "root"}] + [
        {
            "id": f"c{i}",
            "name": "sleep_executor",
            "parent_id": "root",
            "dependencies": [f"c{(i + 1) % n}"],
        }
        for i in range(n)
    ]
    error = await refused(client.stub.CreateTaskTree(tree_request(*tasks)), "DEPENDENCY_CYCLE")
    _, metadata, fields = error_info(error)
    assert metadata["cycle_length"] == str(n)
    message = error.details() or ""
    assert message == f"dependency cycle: {metadata['cycle']}"
    assert len(message) <= 1000
    # Shortened in the middle: the ends are named, the rest counted.
    names = metadata["cycle"].split(" -> ")
    assert names[0] == names[-1]
    hidden = [name for name in names if re.fullmatch(r"\.\.\. \d+ more \.\.\.", name)]
    assert len(hidden) == 1
    shown = [name for name in names[:-1] if name not in hidden]
    assert len(shown) + int(hidden[0].split()[1]) == n
    assert len(fields) == 1 and re.fullmatch(r"tasks\[\d+\]\.dependencies\[0\]\.id", fields[0])
    assert await stored(client) == []


@pytest.mark.parametrize("invalid_tasks", [1000, 1500])
async def test_a_thousand_invalid_tasks_report_twenty_and_the_count(
    client: AsyncClient, invalid_tasks: int
) -> None:
    tasks = [{"id": "root", "name": "root"}] + [
        {"id": f"c{i}", "name": "sleep_executor", "parent_id": "root", "priority": -1}
        for i in range(invalid_tasks)
    ]
    error = await refused(
        client.stub.CreateTaskTree(tree_request(*tasks)), reasons.INVALID_PRIORITY
    )
    _, metadata, fields = error_info(error)
    assert fields == [f"tasks[{i}].priority" for i in range(1, 21)]
    assert metadata["violations_total"] == str(invalid_tasks)
    assert len(error.details() or "") <= 1000
    assert await stored(client) == []


# --------------------------------------------------------------------------- results


VALUES: dict[str, Any] = {
    "nan": {"value": math.nan},
    "inf": [1, -math.inf],
    "deep": nested_object(wire.MAX_JSON_DEPTH),  # json.dumps takes it; protobuf would not
    "huge int": {"value": 10**400},  # no double holds it
    "set": {"value": {1, 2}},
    "python": {1: ("a", "b")},  # JSON once converted: keys are strings, tuples lists
    "deepest": nested_object(wire.MAX_JSON_DEPTH - 1),
}


def result_registry() -> ExecutorRegistry:
    """`returns` gives back VALUES[inputs.kind]; `raises` fails with it as error details."""

    async def returns(context: ExecutionContext) -> Any:
        return VALUES[str(context.inputs["kind"])]

    async def raises(context: ExecutionContext) -> Any:
        raise ExecutorError("failed on purpose", reason="ON_PURPOSE", details=VALUES["python"])

    async def raises_bad(context: ExecutionContext) -> Any:
        details = {"bad": VALUES[str(context.inputs["kind"])]}
        raise ExecutorError("failed on purpose", reason="ON_PURPOSE", details=details)

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="returns", run=returns))
    registry.register(Executor(id="raises", run=raises))
    registry.register(Executor(id="raises_bad", run=raises_bad))
    return registry


async def run_to_end(client: AsyncClient, executor: str, kind: str) -> Task:
    task = await client.create_task(name=executor, inputs={"kind": kind})
    await client.execute_task(task.id)
    return await wait_finished(client, task.id)


@pytest.mark.parametrize("kind", ["nan", "inf", "deep", "huge int", "set"])
async def test_a_result_that_is_not_plain_json_fails_the_task(
    make_server: ServerFactory, kind: str
) -> None:
    client = make_server.client(await make_server(registry=result_registry()))
    finished = await run_to_end(client, "returns", kind)
    assert finished.status == "failed"
    assert finished.error is not None and finished.error.reason == reasons.INVALID_RESULT
    assert finished.result is None
    # The task reads back through every path.
    assert [t.id for t in await client.get_task_tree(finished.id)] == [finished.id]
    assert [t.id for t in await stored(client)] == [finished.id]


async def test_results_and_error_details_are_stored_as_json(make_server: ServerFactory) -> None:
    client = make_server.client(await make_server(registry=result_registry()))
    converted = await run_to_end(client, "returns", "python")
    assert (converted.status, converted.result) == ("completed", {"1": ["a", "b"]})
    deepest = await run_to_end(client, "returns", "deepest")
    assert (deepest.status, deepest.result) == ("completed", VALUES["deepest"])
    failed = await run_to_end(client, "raises", "")
    assert failed.error is not None
    assert (failed.error.reason, failed.error.details) == ("ON_PURPOSE", {"1": ["a", "b"]})
    # Details protobuf could not carry are left out; the task still reads back.
    for kind in ("nan", "deep", "huge int", "set"):
        failed = await run_to_end(client, "raises_bad", kind)
        assert failed.error is not None
        assert (failed.error.reason, failed.error.details) == (
            "ON_PURPOSE",
            {"details": "not plain JSON"},
        )
    assert len(await stored(client)) == 7
