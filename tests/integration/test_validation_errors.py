"""Every validation error of CreateTask and CreateTaskTree, through a real server and database.

Each rejection is checked twice: on the raw stub (gRPC code, and the `google.rpc.Status` in the
`grpc-status-details-bin` trailer: exactly one `ErrorInfo` with the stable reason and domain
`taskgrove.dev`, plus `BadRequest` field violations) and through the SDK (typed exception with
`.reason` and `.field_violations`). After every rejection, ListTasks must return exactly the
tasks it returned before: bad input changes nothing (DESIGN sections 1, 6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from support.status_details import DETAILS_KEY, DOMAIN, status_trailers, unpack
from taskgrove import AsyncClient, InvalidArgumentError, NotFoundError, TaskgroveError, task_message
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

SDK_ERRORS: dict[grpc.StatusCode, type[TaskgroveError]] = {
    INVALID: InvalidArgumentError,
    NOT_FOUND: NotFoundError,
}


# --------------------------------------------------------------------------- helpers


@dataclass
class Details:
    status: status_pb2.Status
    info: error_details_pb2.ErrorInfo
    violations: list[error_details_pb2.BadRequest.FieldViolation]

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.violations]


def decode_details(error: grpc.aio.AioRpcError) -> Details:
    """The rich status of a failed call, checked for the contract's invariants."""
    values = status_trailers(error)
    assert len(values) == 1, f"expected one {DETAILS_KEY} trailer"
    status = status_pb2.Status.FromString(values[0])
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    infos, bad_requests = unpack(status)
    assert len(infos) == 1, "exactly one ErrorInfo"
    assert len(bad_requests) <= 1, "at most one BadRequest"
    info = infos[0]
    assert info.domain == DOMAIN
    assert info.reason.isupper() and " " not in info.reason
    violations = list(bad_requests[0].field_violations) if bad_requests else []
    return Details(status, info, violations)


async def snapshot(client: AsyncClient) -> list[task_pb2.Task]:
    """Every stored task, as ListTasks returns it (all owners, one page)."""
    reply = await client.stub.ListTasks(task_service_pb2.ListTasksRequest(page_size=1000))
    assert not reply.next_page_token
    return list(reply.tasks)


async def expect_rejection(
    client: AsyncClient,
    request: task_service_pb2.CreateTaskRequest | task_service_pb2.CreateTaskTreeRequest,
    code: grpc.StatusCode,
    reason: str,
    fields: Sequence[str] | None,
) -> Details:
    """Send `request` through the raw stub and the SDK; both must fail the same way and
    nothing may be written. `fields` None skips the (order-sensitive) field check."""
    before = await snapshot(client)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if isinstance(request, task_service_pb2.CreateTaskRequest):
            await client.stub.CreateTask(request)
        else:
            await client.stub.CreateTaskTree(request)
    error = caught.value
    assert error.code() == code, error.details()
    details = decode_details(error)
    assert details.info.reason == reason, details
    if code == INVALID:
        assert details.violations, "INVALID_ARGUMENT carries BadRequest field violations"
        # The ErrorInfo reason is the reason of the first violation.
        assert details.violations[0].reason == reason
    if fields is not None:
        assert details.fields == list(fields)
    assert await snapshot(client) == before, "a rejected request changed stored tasks"

    with pytest.raises(SDK_ERRORS[code]) as sdk_caught:
        if isinstance(request, task_service_pb2.CreateTaskRequest):
            await client.create_task(**sdk_fields(request.task))
        else:
            await client.create_task_tree(list(request.tasks), execute=request.execute)
    sdk_error = sdk_caught.value
    assert sdk_error.code == code
    assert sdk_error.reason == reason
    assert sdk_error.metadata == dict(details.info.metadata)
    assert [(v.field, v.description, v.reason) for v in sdk_error.field_violations] == [
        (v.field, v.description, v.reason) for v in details.violations
    ]
    assert await snapshot(client) == before, "a rejected SDK request changed stored tasks"
    return details


def sdk_fields(message: task_pb2.Task) -> dict[str, Any]:
    """The SDK `create_task` keywords that rebuild `message` (for the SDK half of a check)."""
    rebuilt: dict[str, Any] = {
        "name": message.name,
        "user_id": message.user_id,
        "parent_id": message.parent_id or None,
        "executor": message.executor or None,
        "dependencies": [
            {"id": d.id, **({"required": d.required} if d.HasField("required") else {})}
            for d in message.dependencies
        ],
        "inputs": json_format.MessageToDict(message.inputs),
        "params": json_format.MessageToDict(message.params),
        "max_attempts": message.max_attempts,
    }
    if message.HasField("priority"):
        rebuilt["priority"] = message.priority
    if message.HasField("retry_backoff"):
        rebuilt["retry_backoff"] = message.retry_backoff.ToTimedelta()
    if message.HasField("timeout"):
        rebuilt["timeout"] = message.timeout.ToTimedelta()
    assert task_message(**rebuilt) == message
    return rebuilt


async def reject_task(
    client: AsyncClient,
    code: grpc.StatusCode,
    reason: str,
    fields: Sequence[str] | None,
    **task: Any,
) -> Details:
    request = task_service_pb2.CreateTaskRequest(task=task_message(**task))
    return await expect_rejection(client, request, code, reason, fields)


async def reject_tree(
    client: AsyncClient,
    tasks: Sequence[Mapping[str, Any]],
    code: grpc.StatusCode,
    reason: str,
    fields: Sequence[str] | None,
    *,
    execute: bool = False,
) -> Details:
    request = task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_message(**task) for task in tasks], execute=execute
    )
    return await expect_rejection(client, request, code, reason, fields)


def cycle_of(details: Details) -> list[str]:
    """The cycle path of a DEPENDENCY_CYCLE rejection; message, metadata and the single
    violation must all name the same path."""
    assert details.info.reason == "DEPENDENCY_CYCLE"
    path = details.info.metadata["cycle"]
    assert details.status.message == f"dependency cycle: {path}"
    assert len(details.violations) == 1
    violation = details.violations[0]
    assert violation.reason == "DEPENDENCY_CYCLE"
    assert violation.description == f"dependency cycle: {path}"
    return path.split(" -> ")


def assert_cycle(path: Sequence[str], expected: Sequence[str]) -> None:
    """`path` is closed (first id repeated last) and walks `expected` in cyclic order."""
    assert len(path) >= 2 and path[0] == path[-1], path
    ring = list(path[:-1])
    assert sorted(ring) == sorted(expected), path
    start = ring.index(expected[0])
    assert ring[start:] + ring[:start] == list(expected), path


def dependency_field(
    path: Sequence[str], tasks: Sequence[Mapping[str, Any]], prefix: str = "tasks"
) -> str:
    """The field path of the dependency from the cycle's first task to the next one."""
    index = next(i for i, task in enumerate(tasks) if task.get("id") == path[0])
    deps = [d if isinstance(d, str) else d["id"] for d in tasks[index].get("dependencies", ())]
    return f"{prefix}[{index}].dependencies[{deps.index(path[1])}].id"


# --------------------------------------------------------------------------- fixtures


@dataclass
class Stored:
    """Tasks stored before each test (ids are server ids).

    root (group) > a (sleep), g (group) > b (sleep); d (sleep, a root) depends on root;
    bob_root (group, owner bob) > bob_task (sleep).
    """

    root: str
    a: str
    g: str
    b: str
    d: str
    bob_root: str
    bob_task: str


@pytest.fixture
async def stored(client: AsyncClient) -> Stored:
    tree = await client.create_task_tree(
        [
            {"id": "root", "name": "root_task"},
            {"id": "a", "name": "sleep_executor", "parent_id": "root"},
            {"id": "g", "name": "group g", "parent_id": "root"},
            {"id": "b", "name": "sleep_executor", "parent_id": "g"},
        ]
    )
    d = await client.create_task(
        name="sleep_executor", dependencies=[tree["root"].id], user_id="default"
    )
    bob = await client.create_task_tree(
        [
            {"id": "root", "name": "bob's root", "user_id": "bob"},
            {"id": "t", "name": "sleep_executor", "parent_id": "root"},
        ]
    )
    return Stored(
        root=tree["root"].id,
        a=tree["a"].id,
        g=tree["g"].id,
        b=tree["b"].id,
        d=d.id,
        bob_root=bob["root"].id,
        bob_task=bob["t"].id,
    )


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    """A server that accepts at most 3 tasks per CreateTaskTree."""
    instance = TaskgroveServer(
        ServerConfig(
            address="127.0.0.1:0",
            db_url=f"sqlite+aiosqlite:///{tmp_path / 'small.db'}",
            max_tree_size=3,
        )
    )
    await instance.start()
    try:
        async with AsyncClient(f"127.0.0.1:{instance.port}") as connected:
            yield connected
    finally:
        await instance.stop(grace=1)


# --------------------------------------------------------------------------- not found


async def test_create_task_unknown_parent(client: AsyncClient, stored: Stored) -> None:
    details = await reject_task(
        client, NOT_FOUND, "PARENT_NOT_FOUND", ["task.parent_id"], name="x", parent_id="nope"
    )
    assert details.info.metadata["id"] == "nope"
    assert "nope" in details.status.message


async def test_create_tree_unknown_parent_of_top(client: AsyncClient, stored: Stored) -> None:
    details = await reject_tree(
        client,
        [
            {"id": "top", "name": "group", "parent_id": "no-such-task"},
            {"id": "c", "name": "sleep_executor", "parent_id": "top"},
        ],
        NOT_FOUND,
        "PARENT_NOT_FOUND",
        ["tasks[0].parent_id"],
    )
    assert details.info.metadata["id"] == "no-such-task"


async def test_create_tree_unknown_parent_of_inner_task(
    client: AsyncClient, stored: Stored
) -> None:
    # A parent that is neither a local id nor a stored task: NOT_FOUND, not a shape error.
    await reject_tree(
        client,
        [
            {"id": "top", "name": "group"},
            {"id": "c", "name": "sleep_executor", "parent_id": "typo"},
        ],
        NOT_FOUND,
        "PARENT_NOT_FOUND",
        ["tasks[1].parent_id"],
        execute=True,
    )


async def test_parent_of_another_owner_is_not_found(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        NOT_FOUND,
        "PARENT_NOT_FOUND",
        ["task.parent_id"],
        name="sleep_executor",
        parent_id=stored.bob_root,
        user_id="alice",
    )


async def test_create_task_parent_named_like_the_placeholder(
    client: AsyncClient, stored: Stored
) -> None:
    # CreateTask has no local ids: any parent_id that is not a stored task is NOT_FOUND,
    # including the string "task".
    await reject_task(
        client, NOT_FOUND, "PARENT_NOT_FOUND", ["task.parent_id"], name="x", parent_id="task"
    )


# --------------------------------------------------------------------------- dependencies


async def test_create_task_dependency_not_found(client: AsyncClient, stored: Stored) -> None:
    details = await reject_task(
        client,
        INVALID,
        "DEPENDENCY_NOT_FOUND",
        ["task.dependencies[1].id"],
        name="aggregate_results_executor",
        dependencies=[stored.a, "ghost"],
    )
    assert "ghost" in details.violations[0].description


async def test_create_task_dependency_named_like_the_placeholder(
    client: AsyncClient, stored: Stored
) -> None:
    # CreateTask has no local ids: a dependency "task" names a missing task, it is not a
    # self-dependency.
    await reject_task(
        client,
        INVALID,
        "DEPENDENCY_NOT_FOUND",
        ["task.dependencies[0].id"],
        name="sleep_executor",
        dependencies=["task"],
    )


async def test_create_tree_task_without_id_cannot_be_referenced(
    client: AsyncClient, stored: Stored
) -> None:
    # tasks[1] has no client-local id, so nothing can name it; "tasks[1]" is not an id.
    await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"name": "sleep_executor", "parent_id": "r"},
            {
                "id": "c",
                "name": "aggregate_results_executor",
                "parent_id": "r",
                "dependencies": ["tasks[1]"],
            },
        ],
        INVALID,
        "DEPENDENCY_NOT_FOUND",
        ["tasks[2].dependencies[0].id"],
    )


async def test_create_tree_dependency_not_found(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"id": "x", "name": "sleep_executor", "parent_id": "r"},
            {
                "id": "y",
                "name": "aggregate_results_executor",
                "parent_id": "r",
                "dependencies": ["missing", "x"],
            },
        ],
        INVALID,
        "DEPENDENCY_NOT_FOUND",
        ["tasks[2].dependencies[0].id"],
    )


async def test_dependency_on_another_owners_task(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "DEPENDENCY_NOT_FOUND",
        ["task.dependencies[0].id"],
        name="sleep_executor",
        dependencies=[stored.bob_task],
    )


async def test_duplicate_dependency(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "DUPLICATE_DEPENDENCY",
        ["task.dependencies[1].id"],
        name="sleep_executor",
        dependencies=[stored.a, {"id": stored.a, "required": False}],
    )


async def test_create_task_group_with_dependencies(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "GROUP_WITH_DEPENDENCIES",
        ["task.dependencies"],
        name="a folder",
        dependencies=[stored.a],
    )


async def test_create_tree_group_with_dependencies(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"id": "x", "name": "sleep_executor", "parent_id": "r"},
            {"id": "sub", "name": "subgroup", "parent_id": "r", "dependencies": ["x"]},
        ],
        INVALID,
        "GROUP_WITH_DEPENDENCIES",
        ["tasks[2].dependencies"],
    )


# --------------------------------------------------------------------------- cycles


async def test_two_cycle(client: AsyncClient, stored: Stored) -> None:
    tasks = [
        {"id": "r", "name": "root_task"},
        {"id": "x", "name": "sleep_executor", "parent_id": "r", "dependencies": ["y"]},
        {"id": "y", "name": "sleep_executor", "parent_id": "r", "dependencies": ["x"]},
    ]
    details = await reject_tree(client, tasks, INVALID, "DEPENDENCY_CYCLE", None, execute=True)
    path = cycle_of(details)
    assert_cycle(path, ["x", "y"])
    assert details.fields == [dependency_field(path, tasks)]


async def test_three_cycle(client: AsyncClient, stored: Stored) -> None:
    tasks = [
        {"id": "r", "name": "root_task"},
        {"id": "p", "name": "sleep_executor", "parent_id": "r", "dependencies": ["q"]},
        {"id": "q", "name": "sleep_executor", "parent_id": "r", "dependencies": ["s"]},
        {
            "id": "s",
            "name": "aggregate_results_executor",
            "parent_id": "r",
            "dependencies": [stored.a, "p"],
        },
    ]
    details = await reject_tree(client, tasks, INVALID, "DEPENDENCY_CYCLE", None)
    path = cycle_of(details)
    assert_cycle(path, ["p", "q", "s"])
    assert details.fields == [dependency_field(path, tasks)]
    assert details.status.message.count(" -> ") == 3


async def test_self_dependency(client: AsyncClient, stored: Stored) -> None:
    tasks = [
        {"id": "r", "name": "root_task"},
        {"id": "me", "name": "sleep_executor", "parent_id": "r", "dependencies": ["me"]},
    ]
    details = await reject_tree(
        client, tasks, INVALID, "DEPENDENCY_CYCLE", ["tasks[1].dependencies[0].id"]
    )
    assert cycle_of(details) == ["me", "me"]


async def test_task_depending_on_its_own_ancestor_group(
    client: AsyncClient, stored: Stored
) -> None:
    tasks = [
        {"id": "r", "name": "root_task"},
        {"id": "grp", "name": "stage one", "parent_id": "r"},
        {"id": "t", "name": "sleep_executor", "parent_id": "grp", "dependencies": ["r"]},
    ]
    details = await reject_tree(client, tasks, INVALID, "DEPENDENCY_CYCLE", None)
    path = cycle_of(details)
    assert_cycle(path, ["t", "r", "grp"])
    # The violation points at the dependency that closes the loop, not at a group.
    assert details.fields == ["tasks[2].dependencies[0].id"]


async def test_create_task_depending_on_stored_ancestor(
    client: AsyncClient, stored: Stored
) -> None:
    # A new task under stored group g that depends on g's stored parent `root`.
    details = await reject_task(
        client,
        INVALID,
        "DEPENDENCY_CYCLE",
        ["task.dependencies[0].id"],
        name="sleep_executor",
        parent_id=stored.g,
        dependencies=[stored.root],
    )
    path = cycle_of(details)
    new = [ident for ident in path if ident not in (stored.root, stored.g)]
    assert len(set(new)) == 1
    assert_cycle(path, [new[0], stored.root, stored.g])
    assert path[0] == new[0]


async def test_cycle_through_stored_task_of_another_tree(
    client: AsyncClient, stored: Stored
) -> None:
    # Stored d (another tree) depends on stored root; the new subtree goes under root > g and
    # its task depends on d: n -> d -> root -> g -> top -> n.
    tasks = [
        {"id": "top", "name": "new stage", "parent_id": stored.g},
        {"id": "n", "name": "sleep_executor", "parent_id": "top", "dependencies": [stored.d]},
    ]
    details = await reject_tree(
        client,
        tasks,
        INVALID,
        "DEPENDENCY_CYCLE",
        ["tasks[1].dependencies[0].id"],
        execute=True,
    )
    path = cycle_of(details)
    assert_cycle(path, ["n", stored.d, stored.root, stored.g, "top"])
    assert path[0] == "n"


async def test_cycle_through_stored_executable_parent(client: AsyncClient, stored: Stored) -> None:
    # The new task goes under stored executable `a` (below group root) and depends on d,
    # which depends on root: root waits for its whole subtree, the new task included.
    tasks = [
        {"id": "n", "name": "sleep_executor", "parent_id": stored.a, "dependencies": [stored.d]}
    ]
    details = await reject_tree(
        client, tasks, INVALID, "DEPENDENCY_CYCLE", ["tasks[0].dependencies[0].id"]
    )
    assert_cycle(cycle_of(details), ["n", stored.d, stored.root, stored.a])


async def test_no_false_cycle_with_stored_tasks(client: AsyncClient, stored: Stored) -> None:
    """Controls for the cycle cases: these are valid and get created."""
    before = len(await snapshot(client))
    # Under stored g, depending on its stored sibling b and on the unrelated stored a.
    ok = await client.create_task(
        name="aggregate_results_executor", parent_id=stored.g, dependencies=[stored.b, stored.a]
    )
    assert ok.parent_id == stored.g
    # A new root depending on the stored root (which d also depends on).
    other = await client.create_task(name="sleep_executor", dependencies=[stored.root, stored.d])
    assert other.root_id == other.id
    # A child depending on its own executable parent: parents never wait for children.
    child = await client.create_task(
        name="sleep_executor", parent_id=stored.a, dependencies=[stored.a]
    )
    assert child.root_id == stored.root
    assert len(await snapshot(client)) == before + 3


# --------------------------------------------------------------------------- single fields


async def test_unknown_executor(client: AsyncClient, stored: Stored) -> None:
    details = await reject_task(
        client,
        INVALID,
        "UNKNOWN_EXECUTOR",
        ["task.executor"],
        name="render",
        executor="gpu_render_executor",
    )
    assert "gpu_render_executor" in details.violations[0].description


async def test_system_info_invalid_inputs_by_name(client: AsyncClient, stored: Stored) -> None:
    details = await reject_task(
        client,
        INVALID,
        "INVALID_INPUTS",
        ["task.inputs"],
        name="system_info_executor",
        inputs={"resource": "gpu"},
    )
    assert "gpu" in details.violations[0].description
    assert "resource" in details.violations[0].description


async def test_invalid_inputs_with_explicit_executor(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {
                "id": "i",
                "name": "inventory",
                "executor": "system_info_executor",
                "parent_id": "r",
                "inputs": {"resource": "gpu"},
            },
        ],
        INVALID,
        "INVALID_INPUTS",
        ["tasks[1].inputs"],
    )


async def test_invalid_inputs_unknown_property(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "INVALID_INPUTS",
        ["task.inputs"],
        name="sleep_executor",
        inputs={"secs": 1},
    )


@pytest.mark.parametrize("name", ["", "   "])
async def test_name_required(client: AsyncClient, stored: Stored, name: str) -> None:
    await reject_task(client, INVALID, "NAME_REQUIRED", ["task.name"], name=name)


async def test_name_required_in_tree(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [{"id": "r", "name": ""}, {"id": "c", "name": "sleep_executor", "parent_id": "r"}],
        INVALID,
        "NAME_REQUIRED",
        ["tasks[0].name"],
    )


async def test_name_too_long(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "NAME_TOO_LONG",
        ["task.name"],
        name="n" * 256,
        executor="sleep_executor",
    )


async def test_negative_priority(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "INVALID_PRIORITY",
        ["task.priority"],
        name="sleep_executor",
        priority=-1,
    )


async def test_negative_max_attempts(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "INVALID_RETRY_POLICY",
        ["task.max_attempts"],
        name="sleep_executor",
        max_attempts=-2,
    )


async def test_negative_retry_backoff(client: AsyncClient, stored: Stored) -> None:
    await reject_task(
        client,
        INVALID,
        "INVALID_RETRY_POLICY",
        ["task.retry_backoff"],
        name="sleep_executor",
        retry_backoff=timedelta(seconds=-1),
    )


@pytest.mark.parametrize("seconds", [0, -3])
async def test_non_positive_timeout(client: AsyncClient, stored: Stored, seconds: int) -> None:
    await reject_task(
        client,
        INVALID,
        "INVALID_TIMEOUT",
        ["task.timeout"],
        name="sleep_executor",
        timeout=timedelta(seconds=seconds),
    )


async def test_owner_mismatch_in_tree(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task", "user_id": "alice"},
            {"id": "c", "name": "sleep_executor", "parent_id": "r", "user_id": "bob"},
        ],
        INVALID,
        "OWNER_MISMATCH",
        ["tasks[1].user_id"],
    )


# --------------------------------------------------------------------------- tree shape


async def test_duplicate_local_ids(client: AsyncClient, stored: Stored) -> None:
    details = await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"id": "same", "name": "sleep_executor", "parent_id": "r"},
            {"id": "same", "name": "system_info_executor", "parent_id": "r"},
        ],
        INVALID,
        "DUPLICATE_ID",
        ["tasks[2].id"],
    )
    assert "same" in details.violations[0].description


async def test_two_top_tasks(client: AsyncClient, stored: Stored) -> None:
    details = await reject_tree(
        client,
        [
            {"id": "r1", "name": "root_task"},
            {"id": "r2", "name": "root_task"},
            {"id": "c", "name": "sleep_executor", "parent_id": "r1"},
        ],
        INVALID,
        "INVALID_TREE_SHAPE",
        ["tasks"],
    )
    assert "tasks[0], tasks[1]" in details.violations[0].description


async def test_two_tops_one_under_a_stored_parent(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(
        client,
        [
            {"id": "r1", "name": "root_task"},
            {"id": "c", "name": "sleep_executor", "parent_id": stored.g},
        ],
        INVALID,
        "INVALID_TREE_SHAPE",
        ["tasks"],
    )


async def test_parent_links_forming_a_loop(client: AsyncClient, stored: Stored) -> None:
    details = await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"id": "x", "name": "group x", "parent_id": "y"},
            {"id": "y", "name": "group y", "parent_id": "x"},
        ],
        INVALID,
        "INVALID_TREE_SHAPE",
        ["tasks"],
    )
    assert "cycle" in details.violations[0].description


async def test_empty_tree(client: AsyncClient, stored: Stored) -> None:
    await reject_tree(client, [], INVALID, "EMPTY_TREE", ["tasks"], execute=True)


async def test_tree_too_large(small_client: AsyncClient) -> None:
    tasks = [{"id": "r", "name": "root_task"}] + [
        {"id": f"c{i}", "name": "sleep_executor", "parent_id": "r"} for i in range(3)
    ]
    details = await reject_tree(small_client, tasks, INVALID, "TREE_TOO_LARGE", ["tasks"])
    assert "3" in details.violations[0].description
    # At the limit it is accepted.
    created = await small_client.create_task_tree(tasks[:3])
    assert set(created) == {"r", "c0", "c1"}


# --------------------------------------------------------------------------- several at once


async def test_all_violations_are_listed(client: AsyncClient, stored: Stored) -> None:
    details = await reject_tree(
        client,
        [
            {"id": "r", "name": "root_task"},
            {"id": "v1", "name": "", "parent_id": "r"},
            {"id": "v2", "name": "sleep_executor", "parent_id": "r", "priority": -5},
            {"id": "v3", "name": "x", "executor": "no_such", "parent_id": "r"},
            {
                "id": "v4",
                "name": "aggregate_results_executor",
                "parent_id": "r",
                "dependencies": ["v2", "ghost"],
            },
            {
                "id": "v5",
                "name": "system_info_executor",
                "parent_id": "r",
                "inputs": {"resource": "gpu"},
            },
            {"id": "v6", "name": "folder", "parent_id": "r", "dependencies": ["v2"]},
        ],
        INVALID,
        "NAME_REQUIRED",
        None,
        execute=True,
    )
    assert sorted((v.field, v.reason) for v in details.violations) == [
        ("tasks[1].name", "NAME_REQUIRED"),
        ("tasks[2].priority", "INVALID_PRIORITY"),
        ("tasks[3].executor", "UNKNOWN_EXECUTOR"),
        ("tasks[4].dependencies[1].id", "DEPENDENCY_NOT_FOUND"),
        ("tasks[5].inputs", "INVALID_INPUTS"),
        ("tasks[6].dependencies", "GROUP_WITH_DEPENDENCIES"),
    ]
    for violation in details.violations:
        assert violation.field in details.status.message


async def test_create_task_several_violations(client: AsyncClient, stored: Stored) -> None:
    details = await reject_task(
        client,
        INVALID,
        "INVALID_PRIORITY",
        None,
        name="system_info_executor",
        priority=-1,
        inputs={"resource": "gpu"},
        dependencies=["ghost"],
    )
    assert sorted(details.fields) == [
        "task.dependencies[0].id",
        "task.inputs",
        "task.priority",
    ]


async def test_valid_request_after_rejections_is_stored_once(
    client: AsyncClient, stored: Stored
) -> None:
    """A rejected tree leaves no trace that a later valid tree could trip over."""
    tasks = [
        {"id": "r", "name": "root_task"},
        {"id": "x", "name": "sleep_executor", "parent_id": "r", "dependencies": ["x"]},
    ]
    await reject_tree(client, tasks, INVALID, "DEPENDENCY_CYCLE", None)
    before = len(await snapshot(client))
    tasks[1]["dependencies"] = []
    created = await client.create_task_tree(tasks)
    assert len(await snapshot(client)) == before + 2
    assert created["x"].parent_id == created["r"].id
