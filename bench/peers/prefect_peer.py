"""Prefect 3 peer: runs inside build/peers/prefect/venv with PREFECT_API_URL set to a fresh
`prefect server start`. One flow of N trivial tasks, `flat` (N `.submit()`, then every
result) or `chain` (each `.submit(wait_for=[previous])`); prints one JSON line:

- `seconds`: from calling the flow to its return;
- `persisted_seconds`: from calling the flow until the API counts all N task runs of
  that flow run as COMPLETED (Prefect 3 sends task-run states as events, which the server
  writes later), polled every 50 ms.

    python prefect_peer.py --shape flat --tasks 100 --timeout 300
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Any

import httpx
from prefect import flow, task
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

POLL_S = 0.05


@task
def noop() -> None:
    return None


@flow
def bench_flow(shape: str, tasks: int) -> str:
    if shape == "flat":
        futures = [noop.submit() for _ in range(tasks)]
    else:
        futures = []
        previous: PrefectFuture[None] | None = None
        for _ in range(tasks):
            previous = noop.submit(wait_for=[previous] if previous else [])
            futures.append(previous)
    for future in futures:
        future.result()  # raises if the task failed
    return str(flow_run.id)


def completed_count(client: httpx.Client, flow_run_id: str) -> int:
    body = {
        "flow_runs": {"id": {"any_": [flow_run_id]}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    reply = client.post("/task_runs/count", json=body)
    reply.raise_for_status()
    return int(reply.json())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["flat", "chain"], required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    result: dict[str, Any] = {"outcome": "OK", "persisted_seconds": None}
    bounded = bench_flow.with_options(timeout_seconds=args.timeout)
    start = time.perf_counter()
    try:
        flow_run_id = bounded(args.shape, args.tasks)
    except Exception as error:  # the flow's failure (a timeout included), re-raised
        late = time.perf_counter() - start >= args.timeout
        result["outcome"] = "TIMEOUT" if late else "ERROR"
        result["detail"] = f"{type(error).__name__}: {error}"
        print("PEER_RESULT " + json.dumps(result), flush=True)
        return
    result["seconds"] = time.perf_counter() - start
    deadline = start + args.timeout
    with httpx.Client(base_url=os.environ["PREFECT_API_URL"], timeout=30) as client:
        seen = 0
        while time.perf_counter() < deadline:
            seen = completed_count(client, flow_run_id)
            if seen >= args.tasks:
                result["persisted_seconds"] = time.perf_counter() - start
                break
            time.sleep(POLL_S)
        else:  # the flow's result stands; the persisted row shows the run as not done
            result["detail"] = f"persisted: {seen} of {args.tasks} completed at the limit"
    result["completed_task_runs"] = seen
    result["client_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("PEER_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
