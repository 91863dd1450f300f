"""TASKGROVE_GC_STATS=1: a real `taskgrove serve` prints its garbage-collection totals
once, when it stops (what the benchmark reads); without it, nothing is printed."""

from __future__ import annotations

import re
from pathlib import Path

from taskgrove import AsyncClient
from taskgrove_server import gc_tuning
from taskgrove_server.testing import ServerProcess, sqlite_url

_LINE = re.compile(r"taskgrove gc stats: (.*)")


async def _run_a_tree(address: str) -> None:
    async with AsyncClient(address) as client:
        root = await client.create_task(name="root_task")
        for _ in range(3):
            await client.create_task(
                name="sleep_executor", parent_id=root.id, inputs={"seconds": 0}
            )
        await client.execute_task(root.id)
        assert (await client.wait(root.id)).status == "completed"


async def _run_a_flat_tree(address: str, n: int) -> None:
    tree = [{"id": "root", "name": "root_task"}] + [
        {"id": f"s{i}", "name": "sleep_executor", "parent_id": "root", "inputs": {}}
        for i in range(n)
    ]
    async with AsyncClient(address) as client:
        created = await client.create_task_tree(tree, basic=True)
        await client.execute_task(created["root"].id)
        assert (await client.wait(created["root"].id)).status == "completed"


def _stats(server: ServerProcess) -> dict[str, str]:
    lines = [m.group(1) for m in map(_LINE.search, server.log_tail(200).splitlines()) if m]
    assert len(lines) == 1
    return dict(item.split("=", 1) for item in lines[0].split())


async def test_the_server_prints_its_collections_when_it_stops(tmp_path: Path) -> None:
    server = ServerProcess(sqlite_url(tmp_path / "tg.db"), extra_env={"TASKGROVE_GC_STATS": "1"})
    with server:
        await _run_a_tree(server.address)
        assert not _LINE.search(server.log_tail(200))  # only at the end
        assert server.stop() == 0
    fields = _stats(server)
    for generation in range(3):
        assert int(fields[f"gen{generation}_collections"]) >= 0
        assert float(fields[f"gen{generation}_seconds"]) >= 0.0
        assert float(fields[f"gen{generation}_max_seconds"]) <= float(
            fields[f"gen{generation}_seconds"]
        )
    assert int(fields["frozen"]) >= 0


async def test_without_the_flag_nothing_is_printed(tmp_path: Path) -> None:
    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as server:
        await _run_a_tree(server.address)
        assert server.stop() == 0
    assert not _LINE.search(server.log_tail(200))


async def test_a_served_tree_of_thousands_of_tasks_runs_no_full_collection(
    tmp_path: Path,
) -> None:
    """`serve` raises the young generation's threshold (gc_tuning): a completion's
    short-lived objects die young instead of piling up into full collections that scan
    every loaded node and free nothing. With CPython's default (700) this run does
    13-15 middle-generation collections and a full one; tuned, its allocations stay far
    below even one middle collection (ten young ones, 500,000 net allocations)."""
    server = ServerProcess(sqlite_url(tmp_path / "tg.db"), extra_env={"TASKGROVE_GC_STATS": "1"})
    with server:
        await _run_a_flat_tree(server.address, 5_000)
        assert server.stop() == 0
    fields = _stats(server)
    assert int(fields["gen0_threshold"]) == gc_tuning.YOUNG_THRESHOLD
    assert int(fields["gen1_collections"]) == 0
    assert int(fields["gen2_collections"]) == 0
