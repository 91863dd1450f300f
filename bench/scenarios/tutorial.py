"""The tutorial's own path: one `create_task` per task through the SDK's `TaskManager`
(a root group, then N children, flat or each depending on the previous one), then
`distribute_task_tree`, which executes the root and waits on the event stream.

Timed as the tutorial's user sees it: from the first `create_task` to the return of
`distribute_task_tree`, with the creation phase apart and every `create_task` round trip
kept (so a cost that grows with the chain shows as a rising `last 10%` figure).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ERROR, FAILED, OK, TIMEOUT, Backend, num, on_fresh_server, percentile
from taskgrove import TaskgroveError, TaskManager, TaskTreeNode, create_session, statuses
from trees import LEAF_EXECUTOR, LEAF_INPUTS

TUTORIAL_SHAPES = ("flat", "chain")
TUTORIAL_SIZES = (100, 1_000, 10_000)
QUICK_TUTORIAL_SIZES = (100, 1_000)


@dataclass(slots=True)
class TutorialRun:
    backend: str
    shape: str
    tasks: int
    outcome: str = ERROR
    seconds: float | None = None
    """First create_task -> distribute_task_tree returned."""
    create_seconds: float | None = None
    """All the create_task calls (the root's included)."""
    execute_seconds: float | None = None
    """distribute_task_tree alone (execute, wait on the stream, refresh the nodes)."""
    create_p50_ms: float | None = None
    create_p99_ms: float | None = None
    create_first_ms: float | None = None
    """Mean round trip of the first 10% of the children's creates."""
    create_last_ms: float | None = None
    """Mean round trip of the last 10%: equal to the first when cost is independent of
    the tree's size."""
    peak_rss_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""
    create_samples_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def tasks_per_s(self) -> float | None:
        return self.tasks / self.seconds if self.seconds else None


async def tutorial_tree(
    manager: TaskManager, shape: str, size: int
) -> tuple[TaskTreeNode, list[float]]:
    """Create the tree the tutorial way; returns the root node and each child's create
    round trip in seconds."""
    repository = manager.task_repository
    root = TaskTreeNode(await repository.create_task(name="root_task", user_id="bench"))
    samples = []
    previous = ""
    for _ in range(size):
        dependencies = [{"id": previous}] if shape == "chain" and previous else []
        start = time.perf_counter()
        task = await repository.create_task(
            name=LEAF_EXECUTOR,
            user_id="bench",
            parent_id=root.task.id,
            inputs=dict(LEAF_INPUTS),
            dependencies=dependencies,
        )
        samples.append(time.perf_counter() - start)
        root.add_child(TaskTreeNode(task))
        previous = task.id
    return root, samples


async def measure_tutorial(address: str, run: TutorialRun, limit_s: float) -> None:
    session = create_session(address)
    manager = TaskManager(session)
    try:
        async with asyncio.timeout(limit_s):
            start = time.perf_counter()
            root, samples = await tutorial_tree(manager, run.shape, run.tasks)
            created = time.perf_counter()
            await manager.distribute_task_tree(root)
            done = time.perf_counter()
        run.seconds = done - start
        run.create_seconds = created - start
        run.execute_seconds = done - created
        ms = [sample * 1000 for sample in samples]
        run.create_samples_ms = ms
        run.create_p50_ms = percentile(ms, 50)
        run.create_p99_ms = percentile(ms, 99)
        tenth = max(1, len(ms) // 10)
        run.create_first_ms = statistics.fmean(ms[:tenth])
        run.create_last_ms = statistics.fmean(ms[-tenth:])
        status = root.calculate_status()
        if status == statuses.COMPLETED:
            run.outcome = OK
        else:
            run.outcome, run.detail = FAILED, f"root ended {status}"
    except TimeoutError:
        run.outcome, run.detail = TIMEOUT, f"not done after {limit_s:g} s"
    except TaskgroveError as error:
        run.outcome, run.detail = ERROR, f"{type(error).__name__}: {error}"
    finally:
        await session.close()


def run_tutorial(
    backend: Backend, shape: str, size: int, workdir: Path, args: argparse.Namespace
) -> TutorialRun:
    """One fresh server, one tree built and run the tutorial's way."""
    run = TutorialRun(backend.name, shape, size)
    name = f"tutorial-{shape}-{size}"
    on_fresh_server(
        backend,
        name,
        workdir,
        args,
        run,
        lambda address: measure_tutorial(address, run, args.timeout),
    )
    return run


def as_json(run: TutorialRun) -> dict[str, Any]:
    return {
        name: getattr(run, name)
        for name in TutorialRun.__slots__  # type: ignore[attr-defined]
        if name != "create_samples_ms"
    } | {"tasks_per_s": run.tasks_per_s}


def format_tutorial(runs: Sequence[TutorialRun]) -> str:
    header = (
        f"{'backend':<10} {'tutorial':<9} {'tasks':>7} {'total s':>8} {'tasks/s':>8} "
        f"{'create s':>9} {'run s':>7} {'create ms p50/p99':>18} {'first/last 10%':>15}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        if run.outcome != OK:
            lines.append(f"{run.backend:<10} {run.shape:<9} {run.tasks:>7,} {run.outcome}")
            continue
        p = f"{num(run.create_p50_ms, 2)}/{num(run.create_p99_ms, 2)}"
        trend = f"{num(run.create_first_ms, 2)}/{num(run.create_last_ms, 2)}"
        lines.append(
            f"{run.backend:<10} {run.shape:<9} {run.tasks:>7,} {num(run.seconds, 2):>8} "
            f"{num(run.tasks_per_s, 0):>8} {num(run.create_seconds, 2):>9} "
            f"{num(run.execute_seconds, 2):>7} {p:>18} {trend:>15}"
        )
    return "\n".join(lines)
