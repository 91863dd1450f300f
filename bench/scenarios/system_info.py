"""`system_info_executor` with `resource: cpu`, 100 tasks at once: a flat tree of them
run as a throughput `watch` run (CreateTaskTree apart, timed from ExecuteTask to the
root's terminal event), repeated on fresh servers; the median is kept. Before the CPU
sampler each task slept 0.1 s in a thread of asyncio's default pool (3.05 s for 30)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from harness import OK, Backend, num, started_server, tree_request
from trees import ROOT_ID, group

from scenarios.throughput import WATCH, Run, measure_tree

SYSTEM_INFO_TASKS = 100


def cpu_tree(size: int) -> list[dict[str, Any]]:
    return [group(ROOT_ID)] + [
        {
            "id": f"cpu{i}",
            "name": "system_info_executor",
            "parent_id": ROOT_ID,
            "inputs": {"resource": "cpu"},
        }
        for i in range(size)
    ]


def run_system_info(
    backend: Backend, workdir: Path, args: argparse.Namespace, repeats: int = 5
) -> dict[str, Any]:
    request = tree_request(cpu_tree(SYSTEM_INFO_TASKS), execute=False)
    runs = []
    for repeat in range(repeats):
        run = Run(backend.name, "system_info_cpu", SYSTEM_INFO_TASKS, SYSTEM_INFO_TASKS + 1, WATCH)
        with started_server(backend, f"system-info-{repeat}", workdir, args) as server:
            asyncio.run(measure_tree(server.address, request, run, args))
        runs.append(run)
    ok = [run.seconds for run in runs if run.outcome == OK and run.seconds is not None]
    failed = [run for run in runs if run.outcome != OK]
    return {
        "backend": backend.name,
        "tasks": SYSTEM_INFO_TASKS,
        "outcome": OK if not failed else failed[0].outcome,
        "detail": failed[0].detail if failed else "",
        "samples_seconds": ok,
        "median_seconds": statistics.median(ok) if ok else None,
    }


def format_system_info(result: dict[str, Any]) -> str:
    head = (
        f"{result['backend']:<10} system_info cpu x {result['tasks']} at once "
        f"(ExecuteTask -> root completed, watched):"
    )
    if result["outcome"] != OK:
        return f"{head} {result['outcome']} ({result['detail']})"
    samples = result["samples_seconds"]
    return (
        f"{head} median {num(result['median_seconds'], 3)} s "
        f"(min {num(min(samples), 3)}, max {num(max(samples), 3)}, {len(samples)} runs)"
    )
