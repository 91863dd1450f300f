"""Cross-replica event latency: three `taskgrove serve` replicas on one PostgreSQL
database; single-task trees created (and run) on replica A one after another; a watcher
on replica C (and, as the baseline, one on A itself) receives their events. Latency =
the event's arrival in this process - the event's own time (the servers' wall clock,
shared on one machine), so it includes the commit, the NOTIFY and C's read back.

    .venv/bin/python bench/scenarios/cluster_events.py [--pg-url URL] [--samples 200]

Loopback only; bounded (`--samples` trees, each waited for at most `--timeout` s). The
database is made fresh and dropped afterwards. Prints p50/p90/p99 per watcher.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

from taskgrove import AsyncClient, TaskEvent
from taskgrove_server.testing import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ (run alone)
from pgdb import PgServer

DEFAULT_URL = "postgresql+asyncpg://taskgrove:taskgrove@127.0.0.1/taskgrove_bench"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Arrivals:
    """Every event one watcher receives: task id -> status -> latency (s)."""

    def __init__(self, client: AsyncClient) -> None:
        self.latency: dict[str, dict[str, float]] = {}
        self.arrived = asyncio.Event()
        self._stream = client.watch(max_reconnects=0)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for item in self._stream:
            if isinstance(item, TaskEvent) and item.time is not None:
                received = time.time()
                by_status = self.latency.setdefault(item.task_id, {})
                by_status.setdefault(item.status, received - item.time.timestamp())
                self.arrived.set()

    def saw(self, task_id: str, status: str) -> bool:
        if self._task.done():
            self._task.result()
        return status in self.latency.get(task_id, {})

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._stream.aclose()


async def measure(addresses: list[str], samples: int, limit_s: float) -> dict[str, list[float]]:
    async with (
        AsyncClient(addresses[0]) as on_a,
        AsyncClient(addresses[2]) as on_c,
    ):
        watchers = {"watcher on A (same replica)": Arrivals(on_a), "watcher on C": Arrivals(on_c)}
        await asyncio.sleep(0.2)  # both streams established
        try:
            for index in range(samples):
                task = {
                    "id": "t",
                    "name": f"lat{index}",
                    "executor": "sleep_executor",
                    "inputs": {"seconds": 0},
                }
                created = await on_a.create_task_tree([task], execute=True, basic=True)
                task_id = created["t"].id
                async with asyncio.timeout(limit_s):
                    for watcher in watchers.values():
                        while not watcher.saw(task_id, "completed"):
                            watcher.arrived.clear()
                            await watcher.arrived.wait()
                await asyncio.sleep(0.005)  # let the replicas go idle again
        finally:
            for watcher in watchers.values():
                await watcher.close()
    return {
        name: [value for seen in w.latency.values() for value in seen.values()]
        for name, w in watchers.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("TASKGROVE_BENCH_PG_URL", DEFAULT_URL))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    pg = PgServer(args.pg_url)
    with pg.fresh_database("cluster_events") as url:
        replicas = [ServerProcess(url) for _ in range(3)]
        try:
            addresses = [replica.start() for replica in replicas]
            results = asyncio.run(measure(addresses, args.samples, args.timeout))
        finally:
            for replica in replicas:
                replica.stop()
    print(f"cross-replica event latency, {args.samples} single-task trees created on A:")
    for name, values in results.items():
        ms = [value * 1000 for value in values]
        print(
            f"  {name:<28} {len(ms)} events: p50 {percentile(ms, 50):.2f} ms, "
            f"p90 {percentile(ms, 90):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
            f"max {max(ms):.2f} ms, mean {statistics.fmean(ms):.2f} ms"
        )


if __name__ == "__main__":
    main()
