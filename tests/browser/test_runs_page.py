"""The runs page in a real browser: filtered by name on the server (pages stay full), and
live from the event stream: a run started from Python appears at the top and changes
status without a reload, without reading the page again; a run that comes to match a
status filter is offered as "1 new run"."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskgrove import AsyncClient
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ServerConfig

from tests.support.console_url import console_url
from tests.support.trees import sleeper
from tests.support.waiting import until

pytest_plugins = ["tests.support.browser"]  # page, artefacts

if TYPE_CHECKING:
    from tests.conftest import ServerFactory


def run_row(page: Any, task_id: str) -> Any:
    return page.locator(f'table.runs tbody tr[data-task-id="{task_id}"]')


class Calls:
    """The gRPC-Web calls the page makes, by method name."""

    def __init__(self, page: Any) -> None:
        self.methods: list[str] = []
        page.on("request", self._seen)

    def _seen(self, request: Any) -> None:
        if "/taskgrove.v1.TaskService/" in request.url:
            self.methods.append(request.url.rsplit("/", 1)[-1])

    def count(self, method: str) -> int:
        return self.methods.count(method)


async def test_the_name_filter_runs_on_the_server_and_pages_stay_full(
    make_server: ServerFactory, page: Any
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    matching = []
    for index in range(53):
        matching.append((await client.create_task(name=f"Nightly {index}")).id)
        await client.create_task(name=f"other {index}")
    await page.goto(console_url(server))
    await page.locator("table.runs tbody tr").first.wait_for()
    await page.get_by_label("Name contains").fill("NIGHTLY")
    await page.get_by_role("button", name="Apply").click()

    names = page.locator("table.runs tbody tr td:first-child")
    await run_row(page, matching[-1]).wait_for()
    await page.locator("table.runs tbody tr", has_text="other").first.wait_for(state="detached")
    assert await names.all_inner_texts() == [f"Nightly {i}" for i in range(52, 2, -1)]
    await page.get_by_role("button", name="Next page").click()
    await run_row(page, matching[0]).wait_for()
    assert await names.all_inner_texts() == ["Nightly 2", "Nightly 1", "Nightly 0"]
    assert await page.get_by_role("button", name="Next page").is_disabled()

    # Back on the first page: a run of page 2 that changes is not "new"; a new run that
    # matches appears at the top (and, coming later, proves the change was seen first).
    await page.get_by_role("button", name="Previous page").click()
    await run_row(page, matching[-1]).wait_for()
    await client.execute_task(matching[0])
    newest = await client.create_task(name="nightly, the newest")
    await run_row(page, newest.id).wait_for()
    assert (await names.all_inner_texts())[:2] == ["nightly, the newest", "Nightly 52"]
    assert await page.locator(".new-runs").is_hidden()


async def test_a_run_started_from_python_appears_and_changes_live(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    older = await client.create_task(name="older run", user_id="alice")
    calls = Calls(page)
    await page.goto(console_url(server))
    await run_row(page, older.id).wait_for()
    # No wait for the stream: it starts at the page's ListTasks sequence, so what
    # happens while it connects still arrives.

    created = await client.create_task_tree(
        [
            {"id": "root", "name": "live run", "user_id": "bob"},
            sleeper("first", 0.5),
            sleeper("second", 0.5, dependencies=["first"]),
        ],
    )
    live = run_row(page, created["root"].id)
    await live.locator('[data-status="PENDING"]').wait_for()
    names = page.locator("table.runs tbody tr td:first-child")
    assert await names.all_inner_texts() == ["live run", "older run"]

    await client.execute_task(created["root"].id)
    await live.locator('[data-status="IN_PROGRESS"]').wait_for()
    await page.screenshot(path=artefacts / "runs-live.png")
    await live.locator('[data-status="COMPLETED"]').wait_for()
    assert "100%" in await live.inner_text()
    assert await run_row(page, older.id).locator('[data-status="PENDING"]').count() == 1
    # One page read for all of it: the events changed the rows, nothing read the page
    # again; the group root's progress was read at most once a second.
    assert calls.count("ListTasks") == 1
    assert calls.count("WatchEvents") == 1
    assert calls.count("GetTask") <= 4


async def test_a_run_that_comes_to_match_the_status_filter_is_offered(
    make_server: ServerFactory, page: Any
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    done = await client.create_task_tree([sleeper("finished", 0, parent=None)], execute=True)
    await client.wait(done["finished"].id)
    await page.goto(console_url(server))
    await page.get_by_label("Status").select_option("COMPLETED")
    await page.get_by_role("button", name="Apply").click()
    await page.locator("table.runs tbody tr").nth(0).wait_for()
    await run_row(page, done["finished"].id).wait_for()

    created = await client.create_task_tree([sleeper("later", 0.2, parent=None)])
    await client.execute_task(created["later"].id)
    offer = page.get_by_role("button", name="1 run now completed — show")
    await offer.wait_for()
    # Pending then running, it never matched: only its completion is offered, and the
    # rows the user reads do not move under them.
    assert await run_row(page, created["later"].id).count() == 0
    await offer.click()
    await run_row(page, created["later"].id).locator('[data-status="COMPLETED"]').wait_for()
    await offer.wait_for(state="hidden")


async def test_after_a_server_restart_the_page_resumes_after_its_last_sequence(
    make_server: ServerFactory, page: Any
) -> None:
    """The server stops (the page's stream breaks) and starts again on the same ports and
    database; a run created then arrives: the page resumed after the last sequence it
    saw, without reading the page again."""
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    older = await client.create_task(name="older run")
    calls = Calls(page)
    await page.goto(console_url(server))
    await run_row(page, older.id).wait_for()
    await until(lambda: server.hub.subscriber_count == 1)

    assert server.console is not None
    ports = (server.port, server.console.port)
    await make_server.stop(server)
    again = TaskgroveServer(
        ServerConfig(
            address=f"127.0.0.1:{ports[0]}",
            http_address=f"127.0.0.1:{ports[1]}",
            db_url=server.config.db_url,
        )
    )
    await again.start()
    try:
        async with AsyncClient(f"127.0.0.1:{again.port}") as restarted:
            created = await restarted.create_task_tree(
                [{"id": "root", "name": "after the restart"}, sleeper("s", 0.1)], execute=True
            )
            live = run_row(page, created["root"].id)
            await live.locator('[data-status="COMPLETED"]').wait_for()
        assert calls.count("WatchEvents") >= 2  # broken, and resumed
        assert calls.count("ListTasks") == 1
    finally:
        await again.stop(grace=1)
