"""The tree page's other views and the panel's live logs, in a real browser: the
dependency graph, the attempts timeline, log lines arriving while a task runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskgrove_server.executors import ExecutionContext, Executor, ExecutorRegistry

from tests.support.trees import sleeper

pytest_plugins = ["tests.support.browser"]  # page, artefacts

if TYPE_CHECKING:
    from tests.conftest import ServerFactory


async def test_the_graph_and_timeline_show_the_trees_dependencies_and_attempts(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(
        [
            {"id": "root", "name": "pipeline", "user_id": "alice"},
            sleeper("extract", 0.2),
            sleeper("transform", 0.2, dependencies=["extract"]),
            sleeper("load", 0, dependencies=["transform"]),
        ],
        execute=True,
    )
    assert server.console is not None
    await page.goto(f"{server.console.url}#/tree/{created['root'].id}")
    await page.locator(f'.row[data-task-id="{created["root"].id}"]').wait_for()

    await page.get_by_role("button", name="Dependency graph").click()
    graph = page.get_by_role("img", name="Dependency graph")
    await graph.wait_for()
    for name in ("extract", "transform", "load"):
        await graph.get_by_role("link", name=name).wait_for()
    assert await graph.locator("path.edge").count() == 2
    await graph.get_by_role("link", name="load, completed").wait_for()
    await page.screenshot(path=artefacts / "graph.png")

    await page.get_by_role("button", name="Attempts timeline").click()
    timeline = page.get_by_role("img", name="Timeline of attempts")
    await timeline.get_by_role("link", name="transform (attempt 1), completed").wait_for()
    assert await timeline.locator("rect.node").count() == 3
    await page.screenshot(path=artefacts / "timeline.png")

    await page.get_by_role("button", name="Tree").click()
    await page.get_by_role("tree").wait_for()


async def test_the_panel_follows_a_running_tasks_log(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    gate = asyncio.Event()

    async def talk(context: ExecutionContext) -> Any:
        context.log("first line")
        async with asyncio.timeout(30):
            await gate.wait()
        context.log("after the gate")
        return None

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="talk", run=talk, input_schema={"type": "object"}))
    server = await make_server(http_address="127.0.0.1:0", registry=registry)
    client = make_server.client(server)
    created = await client.create_task_tree(
        [{"id": "t", "name": "talker", "executor": "talk", "user_id": "alice"}], execute=True
    )
    task_id = created["t"].id
    assert server.console is not None
    await page.goto(f"{server.console.url}#/tree/{task_id}/{task_id}")
    logs = page.get_by_label("Log lines")
    await logs.filter(has_text="first line").wait_for()

    gate.set()

    await logs.filter(has_text="after the gate").wait_for()
    await page.screenshot(path=artefacts / "logs.png")


def flaky_registry() -> ExecutorRegistry:
    """`flaky`: its first attempt fails, the next one succeeds."""

    async def run(context: ExecutionContext) -> Any:
        await asyncio.sleep(0.2)
        if context.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "fine"

    registry = ExecutorRegistry.default(load_entry_points=False)
    registry.register(Executor(id="flaky", run=run, input_schema={"type": "object"}))
    return registry


FLAKY_TREE = [
    {"id": "root", "name": "retrying", "user_id": "alice"},
    {
        "id": "f",
        "name": "flaky",
        "executor": "flaky",
        "parent_id": "root",
        "max_attempts": 2,
        "retry_backoff": timedelta(milliseconds=100),
    },
    sleeper("steady", 0.1),
]


async def test_the_timeline_shows_every_attempt_from_the_trees_history(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0", registry=flaky_registry())
    client = make_server.client(server)
    created = await client.create_task_tree(FLAKY_TREE)
    root = created["root"].id
    assert server.console is not None
    await page.goto(f"{server.console.url}#/tree/{root}")
    await page.locator(f'.row[data-task-id="{root}"]').wait_for()
    await page.get_by_role("button", name="Attempts timeline").click()
    await page.get_by_text("No task of this tree has started yet.").wait_for()

    # Live: both attempts of the flaky task appear as they happen.
    await client.execute_task(root)
    timeline = page.get_by_role("img", name="Timeline of attempts")
    await timeline.get_by_role("link", name="flaky (attempt 2), completed").wait_for()
    first = timeline.get_by_role("link", name="flaky (attempt 1), failed, retried: EXECUTOR_ERROR")
    assert await first.count() == 1
    await page.screenshot(path=artefacts / "timeline-retried.png")

    # Read again from the stored history: the same bars, the failed attempt included.
    await page.reload()
    await page.locator(f'.row[data-task-id="{root}"]').wait_for()
    await page.get_by_role("button", name="Attempts timeline").click()
    await timeline.get_by_role("link", name="flaky (attempt 2), completed").wait_for()
    assert await first.count() == 1
    assert await timeline.get_by_role("link", name="steady (attempt 1), completed").count() == 1
    assert await timeline.locator("rect.node").count() == 3
    assert await page.locator(".pruned").count() == 0


async def test_a_pruned_history_falls_back_to_the_current_attempt_and_says_so(
    make_server: ServerFactory, page: Any
) -> None:
    server = await make_server(
        http_address="127.0.0.1:0", registry=flaky_registry(), event_retention_seconds=0
    )
    client = make_server.client(server)
    created = await client.create_task_tree(FLAKY_TREE, execute=True)
    root = created["root"].id
    async with asyncio.timeout(10):
        await client.wait(root)
    await server.prune_events()
    assert server.console is not None
    await page.goto(f"{server.console.url}#/tree/{root}")
    await page.locator(f'.row[data-task-id="{root}"]').wait_for()
    await page.get_by_role("button", name="Attempts timeline").click()

    timeline = page.get_by_role("img", name="Timeline of attempts")
    await timeline.get_by_role("link", name="flaky (attempt 2) *, completed").wait_for()
    assert await timeline.locator("rect.node").count() == 2  # flaky's attempt 1 is gone
    await page.get_by_text("The history of 2 tasks was pruned").wait_for()
