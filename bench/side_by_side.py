"""Two servers' CreateTask side by side: the server code of two source trees (e.g. a
`git worktree` of the commit before, and this checkout), each on a fresh SQLite file, and
one client alternating single CreateTasks between them, so both meet the same moment of
the machine. On this 2-core VM a whole run's figures drift by 20-50 % within minutes;
interleaved whole runs could not tell a 6-9 % change, and this shows it round after
round (±1-2 %).

    git worktree add /tmp/before HEAD~1
    .venv/bin/python bench/side_by_side.py --old /tmp/before --new . --shape chain

Each round: `--calls` creates on each server after 200 untimed ones, a leaf under one
root (`chain`: depending on the one before), through the raw stub; the order flips every
call. Prints each round's p50 and server CPU per call (psutil), and new/old ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from connection import open_channel
from harness import percentile
from scenarios.floor import leaf_creator
from taskgrove.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from taskgrove_server.testing import ServerProcess, sqlite_url

WARMUP = 200
SIDES = ("old", "new")


class Side:
    """One server, and the creates timed on it."""

    def __init__(self, address: str, pid: int) -> None:
        self.address = address
        self.process = psutil.Process(pid)
        self.samples: list[float] = []

    def cpu(self) -> float:
        return float(sum(self.process.cpu_times()[:2]))


async def one_round(
    sides: dict[str, Side], chained: bool, calls: int
) -> dict[str, tuple[float, float]]:
    """Per side: (p50 ms, server CPU us per call)."""
    channels = {name: open_channel(side.address) for name, side in sides.items()}
    try:
        creates = {}
        for name, channel in channels.items():
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            root = task_pb2.Task(name="root_task", user_id="bench")
            root_id = (await stub.CreateTask(task_service_pb2.CreateTaskRequest(task=root))).id
            creates[name] = leaf_creator(stub, root_id, chained)
        for _ in range(WARMUP):
            for create in creates.values():
                await create()
        before = {name: side.cpu() for name, side in sides.items()}
        for call in range(calls):
            for name in SIDES if call % 2 == 0 else reversed(SIDES):
                start = time.perf_counter()
                await creates[name]()
                sides[name].samples.append(time.perf_counter() - start)
        return {
            name: (
                percentile(side.samples, 50) * 1000,
                (side.cpu() - before[name]) / calls * 1e6,
            )
            for name, side in sides.items()
        }
    finally:
        for channel in channels.values():
            await channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="source tree (server/, client/)")
    parser.add_argument("--new", type=Path, required=True, help="source tree (server/, client/)")
    parser.add_argument("--shape", choices=("flat", "chain"), default="chain")
    parser.add_argument("--calls", type=int, default=3000, help="timed creates per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for tree in trees.values():
        if not (tree / "server" / "taskgrove_server").is_dir():
            parser.error(f"{tree} has no server/taskgrove_server")
    ratios: dict[str, list[float]] = {"p50": [], "cpu": []}
    with tempfile.TemporaryDirectory(prefix="taskgrove-side-by-side-") as scratch:
        for round_number in range(1, args.rounds + 1):
            servers = {
                name: ServerProcess(
                    sqlite_url(Path(scratch) / f"{name}-{round_number}.db"),
                    extra_env={"PYTHONPATH": f"{tree / 'server'}:{tree / 'client'}"},
                )
                for name, tree in trees.items()
            }
            try:
                sides = {name: Side(server.start(), server.pid) for name, server in servers.items()}
                result = asyncio.run(one_round(sides, args.shape == "chain", args.calls))
            finally:
                for server in servers.values():
                    server.stop()
            (old_p50, old_cpu), (new_p50, new_cpu) = result["old"], result["new"]
            ratios["p50"].append(new_p50 / old_p50)
            ratios["cpu"].append(new_cpu / old_cpu)
            print(
                f"round {round_number} {args.shape}:"
                f" old p50 {old_p50:.3f} ms, CPU {old_cpu:,.0f} us"
                f" | new p50 {new_p50:.3f} ms, CPU {new_cpu:,.0f} us"
                f" | new/old p50 {ratios['p50'][-1]:.3f}, CPU {ratios['cpu'][-1]:.3f}",
                flush=True,
            )
    print(
        f"median new/old over {args.rounds} rounds: p50 {statistics.median(ratios['p50']):.3f}, "
        f"server CPU {statistics.median(ratios['cpu']):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
