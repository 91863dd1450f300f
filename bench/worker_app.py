"""The benchmark's worker: `taskgrove worker worker_app:worker` (run with bench/ as its
current directory, see `scenarios/workers.py`).

- `bench_noop`: returns at once (the throughput runs' leaves);
- `bench_probe`: returns when it started: CLOCK_MONOTONIC (ns), a clock every process of
  the machine shares, and the wall clock (us), the server's clock for `start_time` (the
  dispatch-latency samples).
"""

from __future__ import annotations

import time
from typing import Any

from taskgrove import Worker, WorkerContext

NOOP, PROBE = "bench_noop", "bench_probe"

worker = Worker("bench")


@worker.executor(NOOP, input_schema={"type": "object"})
async def noop(ctx: WorkerContext) -> None:
    """Nothing: what is measured is the dispatch."""
    return None


@worker.executor(PROBE, input_schema={"type": "object"})
async def probe(ctx: WorkerContext) -> dict[str, Any]:
    """When the function started (CLOCK_MONOTONIC ns, wall clock us)."""
    started_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return {"started_ns": started_ns, "started_wall_us": time.time_ns() // 1000}
