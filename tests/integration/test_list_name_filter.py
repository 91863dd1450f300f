"""ListTasks' `name_contains`: a case-insensitive, literal substring of the name that
combines with the other filters, both orders and page tokens, on SQLite and PostgreSQL
(the two build the LIKE differently: lower() LIKE lower() and ILIKE)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2
from support.listing import every_page
from support.status_details import status_trailers, unpack
from taskgrove import AsyncClient, InvalidArgumentError, statuses
from taskgrove.v1 import task_service_pb2


@pytest.fixture(params=["sqlite", "postgresql"])
def any_client(request: pytest.FixtureRequest) -> AsyncClient:
    """A client of a server on SQLite, then on PostgreSQL (skipped without one)."""
    name = "client" if request.param == "sqlite" else "pg_client"
    connected: AsyncClient = request.getfixturevalue(name)
    return connected


async def names(client: AsyncClient, text: str, **filters: object) -> list[str]:
    return [task.name async for task in client.list_tasks(name_contains=text, **filters)]


async def test_a_substring_in_any_case_and_wildcards_taken_literally(
    any_client: AsyncClient,
) -> None:
    for name in (
        "Nightly Report",
        "nightly-build",
        "weekly",
        "report 50%",
        "report 50 tasks",
        "a_b",
        "axb",
        "back\\slash",
        "backslash",
    ):
        await any_client.create_task(name=name)
    assert await names(any_client, "NIGHTLY") == ["Nightly Report", "nightly-build"]
    assert await names(any_client, "rEpOrT") == ["Nightly Report", "report 50%", "report 50 tasks"]
    assert await names(any_client, "50%") == ["report 50%"]
    assert await names(any_client, "%") == ["report 50%"]
    assert await names(any_client, "a_b") == ["a_b"]
    assert await names(any_client, "_") == ["a_b"]
    assert await names(any_client, "k\\s") == ["back\\slash"]
    assert await names(any_client, "\\") == ["back\\slash"]
    assert await names(any_client, "Nightly Report") == ["Nightly Report"]
    assert await names(any_client, "nothing like it") == []
    assert len(await names(any_client, "")) == 9  # empty: no name filter


async def test_combined_with_roots_status_and_owner(any_client: AsyncClient) -> None:
    done = await any_client.create_task_tree(
        [
            {"id": "r", "name": "ETL daily", "user_id": "alice"},
            {"id": "x", "name": "etl extract", "parent_id": "r", "executor": "sleep_executor"},
            {"id": "y", "name": "load", "parent_id": "r", "executor": "sleep_executor"},
        ],
        execute=True,
    )
    await any_client.wait(done["r"].id)
    await any_client.create_task(name="etl weekly", user_id="bob")
    await any_client.create_task(name="etl monthly", user_id="alice")
    assert await names(any_client, "etl") == [
        "ETL daily", "etl extract", "etl weekly", "etl monthly",
    ]  # fmt: skip
    assert await names(any_client, "etl", roots_only=True) == [
        "ETL daily", "etl weekly", "etl monthly",
    ]  # fmt: skip
    assert await names(any_client, "etl", statuses=[statuses.COMPLETED]) == [
        "ETL daily",
        "etl extract",
    ]
    assert await names(any_client, "etl", user_id="alice", roots_only=True) == [
        "ETL daily",
        "etl monthly",
    ]
    assert await names(
        any_client, "ETL", user_id="alice", statuses=[statuses.PENDING], roots_only=True
    ) == ["etl monthly"]
    assert await names(any_client, "etl", parent_id=done["r"].id) == ["etl extract"]
    assert await names(any_client, "load", user_id="bob") == []
    assert await names(any_client, "etl", roots_only=True, order_by="create_time desc") == [
        "etl monthly", "etl weekly", "ETL daily",
    ]  # fmt: skip


async def test_pages_of_a_filtered_listing_cover_every_match_once(
    any_client: AsyncClient,
) -> None:
    """Matches interleaved with other names: every page is full until the last, in both
    orders, so the filter is applied by the query, not to a page after it was read."""
    matching: list[str] = []
    for index in range(13):
        matching.append((await any_client.create_task(name=f"Match {index}")).id)
        await any_client.create_task(name=f"other {index}")
    for size in (1, 4, 5, 13, 100):
        assert await every_page(any_client, size, name_contains="match") == matching, size
        newest = await every_page(
            any_client, size, name_contains="MATCH", order_by="create_time desc"
        )
        assert newest == matching[::-1], size
    page, token = await any_client.list_tasks_page(page_size=5, name_contains="match")
    assert [task.id for task in page] == matching[:5] and token


async def test_a_page_token_continues_only_its_own_name_filter(any_client: AsyncClient) -> None:
    for index in range(4):
        await any_client.create_task(name=f"alpha beta {index}")
    _, plain = await any_client.list_tasks_page(page_size=1)
    _, alpha = await any_client.list_tasks_page(page_size=1, name_contains="alpha")
    _, upper = await any_client.list_tasks_page(page_size=1, name_contains="ALPHA")
    assert plain and alpha and upper
    for token, text in ((plain, "alpha"), (alpha, ""), (alpha, "beta"), (alpha, "ALPHA")):
        with pytest.raises(InvalidArgumentError) as caught:
            await any_client.list_tasks_page(page_size=1, page_token=token, name_contains=text)
        assert caught.value.reason == "INVALID_PAGE_TOKEN", (token, text)
    second, _ = await any_client.list_tasks_page(
        page_size=1, page_token=alpha, name_contains="alpha"
    )
    assert second[0].name == "alpha beta 1"
    rest, _ = await any_client.list_tasks_page(
        page_size=10, page_token=upper, name_contains="ALPHA"
    )
    assert [task.name for task in rest] == ["alpha beta 1", "alpha beta 2", "alpha beta 3"]


async def test_bad_name_filters_are_invalid_argument(any_client: AsyncClient) -> None:
    await any_client.create_task(name="x" * 255)
    assert await names(any_client, "x" * 255) == ["x" * 255]
    for text, reason in (("x" * 256, "NAME_TOO_LONG"), ("a\x00b", "INVALID_STRING")):
        request = task_service_pb2.ListTasksRequest(name_contains=text)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await any_client.stub.ListTasks(request)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        [details] = status_trailers(error)
        infos, bad_requests = unpack(status_pb2.Status.FromString(details))
        assert [info.reason for info in infos] == [reason]
        fields = [v.field for bad in bad_requests for v in bad.field_violations]
        assert fields == ["name_contains"]
