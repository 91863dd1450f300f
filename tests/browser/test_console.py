"""The web console in a real browser: the runs page, a live tree, cancelling through the
UI, signing in, labels and keyboard navigation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskgrove import AsyncClient

from tests.support.console_url import console_url
from tests.support.credentials import TOKENS, write_auth_files
from tests.support.trees import sleeper
from tests.support.waiting import until_task

pytest_plugins = ["tests.support.browser"]  # page, artefacts

if TYPE_CHECKING:
    from tests.conftest import ServerFactory


def row(page: Any, task_id: str) -> Any:
    return page.locator(f'.vlist .row[data-task-id="{task_id}"]')


async def test_the_runs_page_lists_trees_newest_first_and_a_tree_updates_live(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    older = await client.create_task(name="older run", user_id="alice")
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "newer run", "user_id": "bob"},
            sleeper("first", 0.6),
            sleeper("second", 0.3, dependencies=["first"]),
        ]
    )
    await page.goto(console_url(server))

    names = page.locator("table.runs tbody tr td:first-child")
    await names.nth(1).wait_for()
    assert await names.all_inner_texts() == ["newer run", "older run"]
    assert await page.locator("table.runs tbody tr").first.inner_text() != ""
    await page.screenshot(path=artefacts / "runs.png")

    await page.get_by_role("link", name="newer run").click()
    first, second = created["first"].id, created["second"].id
    await row(page, second).wait_for()
    assert await row(page, first).locator(".status").inner_text() == "pending"
    await client.execute_task(created["root"].id)
    # No reload: the statuses arrive over the event stream.
    await row(page, first).locator('[data-status="IN_PROGRESS"]').wait_for()
    await page.screenshot(path=artefacts / "tree-running.png")
    await row(page, second).locator('[data-status="COMPLETED"]').wait_for()
    await row(page, created["root"].id).locator('[data-status="COMPLETED"]').wait_for()
    assert "2 completed" in await row(page, created["root"].id).locator(".counts").inner_text()
    assert older.id not in await page.content()


async def test_a_task_cancelled_through_the_panel_ends_cancelled(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(
        [{"id": "root", "name": "long run", "user_id": "alice"}, sleeper("long", 30)],
        execute=True,
    )
    long_id = created["long"].id
    await page.goto(console_url(server, f"#/tree/{created['root'].id}"))
    await row(page, long_id).locator('[data-status="IN_PROGRESS"]').wait_for()

    # Keyboard only: Tab reaches the tree, arrows move, Enter opens the panel.
    await page.locator(".vlist .row").first.focus()
    await page.keyboard.press("ArrowDown")
    assert await page.evaluate("document.activeElement.dataset.taskId") == long_id
    await page.keyboard.press("Enter")
    panel = page.get_by_role("region", name="Task details")
    await panel.get_by_role("heading", name="long").wait_for()
    await panel.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    await dialog.wait_for()
    await page.screenshot(path=artefacts / "cancel-confirm.png")
    await dialog.get_by_role("button", name="Cancel").click()

    await row(page, long_id).locator('[data-status="CANCELLED"]').wait_for()
    await page.get_by_role("status").filter(has_text="cancelled").wait_for()
    await page.screenshot(path=artefacts / "cancelled.png")
    task = await until_task(client, long_id, lambda t: t.status == "cancelled")
    assert task.status == "cancelled"


async def test_a_confirmation_declined_changes_nothing(
    make_server: ServerFactory, page: Any
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    task = await client.create_task(name="kept", user_id="alice")
    await page.goto(console_url(server, f"#/tree/{task.id}/{task.id}"))
    panel = page.get_by_role("region", name="Task details")
    await panel.get_by_role("button", name="Cancel").click()
    await page.get_by_role("dialog").get_by_role("button", name="Keep it").click()

    await page.get_by_role("dialog").wait_for(state="detached")
    assert (await client.get_task(task.id)).status == "pending"


async def test_with_auth_on_the_console_asks_for_a_token_and_keeps_owner_rules(
    make_server: ServerFactory, page: Any, tmp_path: Path, artefacts: Path
) -> None:
    auth = write_auth_files(tmp_path)
    server = await make_server(http_address="127.0.0.1:0", **auth.server_config())
    async with AsyncClient(f"127.0.0.1:{server.port}", token=TOKENS["ada"][0]) as admin:
        for user in ("alice", "bob"):
            await admin.create_task(name=f"{user}'s run", user_id=user)
    await page.goto(console_url(server))

    token = page.get_by_label("Bearer token")
    await token.wait_for()
    await page.screenshot(path=artefacts / "sign-in.png")
    await token.fill(TOKENS["alice"][0])
    await page.get_by_role("button", name="Sign in").click()

    await page.get_by_role("link", name="alice's run").wait_for()
    assert await page.get_by_role("link", name="bob's run").count() == 0
    # A reader may look but not act: the API's PERMISSION_DENIED, shown as such.
    await page.get_by_role("button", name="Sign out").click()
    await token.fill(TOKENS["rita"][0])
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("link", name="bob's run").click()
    panel = page.get_by_role("region", name="Task details")
    await page.locator(".vlist .row").first.press("Enter")
    await panel.get_by_role("button", name="Cancel").click()
    await page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    await page.get_by_role("alert").filter(has_text="PERMISSION_DENIED").wait_for()
    await page.get_by_role("button", name="Sign out").click()
    await token.fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").filter(has_text="UNAUTHENTICATED").wait_for()


async def test_every_control_has_a_label(make_server: ServerFactory, page: Any) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(
        [{"id": "root", "name": "labelled", "user_id": "alice"}, sleeper("child", 0)]
    )
    unlabelled = """() => [...document.querySelectorAll('input, select, button, progress')]
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !(e.textContent || '').trim())
        .map((e) => e.outerHTML)"""
    await page.goto(console_url(server))
    await page.get_by_role("link", name="labelled").wait_for()
    assert await page.evaluate(unlabelled) == []
    root_id = created["root"].id
    await page.goto(console_url(server, f"#/tree/{root_id}/{root_id}"))
    await (
        page.get_by_role("region", name="Task details")
        .get_by_role("button", name="Copy")
        .wait_for()
    )
    assert await page.evaluate(unlabelled) == []
    rows = page.get_by_role("treeitem")
    assert await rows.count() == 2
    assert "labelled" in (await rows.first.get_attribute("aria-label") or "")


async def test_a_failed_task_is_shown_with_its_error_then_retried_and_copied(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "flaky run", "user_id": "alice"},
            sleeper("breaks", 0, inputs={"fail": True, "message": "disk on fire"}, max_attempts=1),
        ],
        execute=True,
    )
    root_id, broken = created["root"].id, created["breaks"].id
    await until_task(client, broken, lambda t: t.status == "failed")
    await page.goto(console_url(server, f"#/tree/{root_id}/{broken}"))
    panel = page.get_by_role("region", name="Task details")

    await panel.get_by_label("Error").filter(has_text="disk on fire").wait_for()
    await page.screenshot(path=artefacts / "failed.png")
    await panel.get_by_role("button", name="Retry").click()
    await page.get_by_role("dialog").get_by_role("button", name="Retry").click()
    await page.get_by_role("status").filter(has_text="retried 1 task").wait_for()
    await until_task(client, broken, lambda t: t.attempt == 2 and t.status == "failed")

    await page.locator(f'.row[data-task-id="{root_id}"]').press("Enter")
    await panel.get_by_role("heading", name="flaky run").wait_for()
    await panel.get_by_role("button", name="Copy").click()
    await page.get_by_role("dialog").get_by_role("button", name="Copy").click()
    # The console opens the copy: a new tree whose root points at the original.
    await page.wait_for_url(lambda address: root_id not in address)
    copy_id = page.url.rsplit("/", 1)[-1]
    await page.locator(f'.row[data-task-id="{copy_id}"]').wait_for()
    assert (await client.get_task(copy_id)).original_task_id == root_id
    await page.get_by_role("status").filter(has_text='copied 2 task(s) from "flaky run"').wait_for()
