"""The console with a 10,000-task tree: it draws the snapshot, then applies every event of
the whole tree running. The timings are recorded in build/artefacts/browser/speed.json
(bench/console_speed.py prints them); only correctness is asserted here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest_plugins = ["tests.support.browser"]  # page, artefacts

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

pytestmark = pytest.mark.timeout(300)

GROUPS = 100
PER_GROUP = 99
"""1 root + 100 groups + 9,900 sleepers = 10,001 tasks."""

FRAME_GAPS = """() => {
  window.frameGaps = [];
  let last = performance.now();
  const tick = (now) => { window.frameGaps.push(now - last); last = now;
                          if (window.frameGaps.length < 100000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


async def until_js(page: Any, predicate: str, limit_s: float = 60) -> None:
    """Poll a JS predicate (wait_for_function evaluates strings, which the console's CSP
    refuses, rightly)."""
    async with asyncio.timeout(limit_s):
        while True:
            if await page.evaluate(predicate):
                return
            await asyncio.sleep(0.02)


def big_tree() -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = [{"id": "root", "name": "ten thousand", "user_id": "alice"}]
    for g in range(GROUPS):
        specs.append({"id": f"g{g}", "name": f"group {g}", "parent_id": "root"})
        specs += [
            {
                "id": f"g{g}t{t}",
                "name": f"task {g}.{t}",
                "executor": "sleep_executor",
                "parent_id": f"g{g}",
                "inputs": {"seconds": 0},
            }
            for t in range(PER_GROUP)
        ]
    return specs


async def test_a_ten_thousand_task_tree_renders_and_keeps_up(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(big_tree(), basic=True)
    root = created["root"].id
    assert server.console is not None

    await page.goto(f"{server.console.url}#/tree/{root}")
    await until_js(page, "() => window.taskgroveMetrics && window.taskgroveMetrics.paintedAt > 0")
    snapshot = await page.evaluate("({...window.taskgroveMetrics})")
    assert snapshot["snapshotTasks"] == 1 + GROUPS * (1 + PER_GROUP)
    # Virtualised: a few dozen rows exist, not ten thousand.
    assert await page.locator(".vlist .row").count() < 100

    await page.evaluate(FRAME_GAPS)
    await client.execute_task(root)
    await page.locator(f'.row[data-task-id="{root}"] [data-status="COMPLETED"]').wait_for(
        timeout=240_000
    )
    await until_js(
        page, "() => document.querySelector('.summary').textContent.includes('10001 completed')"
    )
    done = await page.evaluate("({...window.taskgroveMetrics})")
    gaps = sorted(await page.evaluate("window.frameGaps"))
    seconds = (done["lastEventAt"] - done["firstEventAt"]) / 1000
    figures = {
        "tasks": snapshot["snapshotTasks"],
        "first_chunk_to_painted_ms": round(
            snapshot["paintedAt"] - snapshot["snapshotFirstChunkAt"], 1
        ),
        "snapshot_to_drawn_ms": round(snapshot["renderedAt"] - snapshot["snapshotAt"], 1),
        "snapshot_to_painted_ms": round(snapshot["paintedAt"] - snapshot["snapshotAt"], 1),
        "events": done["events"],
        "event_seconds": round(seconds, 2),
        "events_per_second": round(done["events"] / seconds) if seconds > 0 else None,
        "frame_gap_ms_p50": round(gaps[len(gaps) // 2], 1) if gaps else None,
        "frame_gap_ms_max": round(gaps[-1], 1) if gaps else None,
    }
    (artefacts / "speed.json").write_text(json.dumps(figures, indent=2) + "\n")
    await page.screenshot(path=artefacts / "tree-10k.png")
    assert done["events"] >= 2 * GROUPS * PER_GROUP


async def test_the_runs_page_keeps_up_with_a_ten_thousand_task_tree_running(
    make_server: ServerFactory, page: Any, artefacts: Path
) -> None:
    """The runs page follows every task of the server (no root filter) while the tree runs:
    events are applied once per frame, and the running root's progress is read at most
    once a second, not once per event."""
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(big_tree(), basic=True)
    root = created["root"].id
    assert server.console is not None
    reads: list[str] = []
    page.on(
        "request",
        lambda request: (
            reads.append(request.url.rsplit("/", 1)[-1])
            if "/taskgrove.v1.TaskService/" in request.url
            else None
        ),
    )
    await page.goto(server.console.url)
    row = page.locator(f'table.runs tbody tr[data-task-id="{root}"]')
    await row.wait_for()

    await page.evaluate(FRAME_GAPS)
    await client.execute_task(root)
    await row.locator('[data-status="COMPLETED"]').wait_for(timeout=240_000)
    done = await page.evaluate("({...window.taskgroveMetrics})")
    gaps = sorted(await page.evaluate("window.frameGaps"))
    figures = {
        "events": done["runsEvents"],
        "frames_applying_events": done["runsFlushes"],
        "list_tasks_calls": reads.count("ListTasks"),
        "get_task_calls": reads.count("GetTask"),
        "frame_gap_ms_p50": round(gaps[len(gaps) // 2], 1) if gaps else None,
        "frame_gap_ms_max": round(gaps[-1], 1) if gaps else None,
    }
    (artefacts / "speed-runs.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert "100%" in await row.inner_text()
    assert done["runsEvents"] >= 2 * GROUPS * PER_GROUP
    assert reads.count("ListTasks") == 1
    assert done["runsFlushes"] < done["runsEvents"] / 10  # batched, not one per event
