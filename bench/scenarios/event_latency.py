"""Event latency: single-task trees created one after another on an idle server, and a
watcher process on every event; latency = the message's arrival in that process - the
event's own time (the server's wall clock, shared on one machine)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from connection import client_config
from harness import (
    ERROR,
    OK,
    TIMEOUT,
    Backend,
    cancel,
    rpc_error_text,
    started_server,
    summary_ms,
    tree_request,
)
from sampler import MB, RssSampler
from taskgrove import AsyncClient
from taskgrove.v1 import task_pb2
from trees import leaf
from watcher import WatcherProcess

EVENT_LATENCY_SAMPLES = 300


async def measure_event_latency(address: str, samples: int, limit_s: float) -> dict[str, Any]:
    """`samples` single-task trees, created with execute=True one after another; a watcher
    process on every event records when each event arrived."""
    watcher = WatcherProcess(["latency", "--address", address, "--max-seconds", str(limit_s)])
    arrivals: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    """task id -> status name -> (event time us, receive time ns)."""
    completed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def read() -> None:
        while True:
            parts = (await watcher.line()).split()
            if parts[0] != "ev":
                continue
            task_id, status = (
                parts[2],
                task_pb2.TaskStatus.Name(task_pb2.TaskStatus.ValueType(int(parts[4]))),
            )
            arrivals[task_id].setdefault(status, (int(parts[5]), int(parts[6])))
            if status == "TASK_STATUS_COMPLETED":
                completed[task_id].set()

    await watcher.start()
    reader: asyncio.Task[None] | None = None
    sent_ns: dict[str, int] = {}
    try:
        async with asyncio.timeout(limit_s):
            ready = await watcher.line()
            if not ready.startswith("ready"):
                raise RuntimeError(f"unexpected watcher output: {ready}")
            reader = asyncio.create_task(read())
            async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
                for index in range(samples):
                    task = leaf(f"lat{index}", "")
                    task["parent_id"] = None
                    request = tree_request([task], execute=True)
                    sent = time.time_ns()
                    reply = await client.stub.CreateTaskTree(request)
                    task_id = reply.task_ids[task["id"]]
                    sent_ns[task_id] = sent
                    done = asyncio.create_task(completed[task_id].wait())
                    await asyncio.wait({done, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if reader.done():
                        reader.result()
                    await asyncio.sleep(0.005)  # let the server go idle again
    finally:
        await cancel(reader)
        await watcher.stop()
    by_status: dict[str, list[float]] = defaultdict(list)
    end_to_end: list[float] = []
    for task_id, seen in arrivals.items():
        if task_id not in sent_ns:
            continue
        for status, (event_us, received_ns) in seen.items():
            by_status[status].append((received_ns / 1000 - event_us) / 1e6)
        if "TASK_STATUS_COMPLETED" in seen:
            end_to_end.append((seen["TASK_STATUS_COMPLETED"][1] - sent_ns[task_id]) / 1e9)
    everything = [value for values in by_status.values() for value in values]
    return {
        "samples": samples,
        "completed": summary_ms(by_status.get("TASK_STATUS_COMPLETED", [])),
        "by_status": {status: summary_ms(values) for status, values in by_status.items()},
        "all_events": summary_ms(everything),
        "create_to_completed_received": summary_ms(end_to_end),
    }


def run_event_latency(backend: Backend, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend.name, "outcome": ERROR}
    try:
        with (
            started_server(backend, "event-latency", workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            measured = asyncio.run(
                measure_event_latency(server.address, args.event_samples, args.timeout)
            )
    except TimeoutError:
        return {**result, "outcome": TIMEOUT, "detail": f"not done after {args.timeout:g} s"}
    except (RuntimeError, grpc.aio.AioRpcError) as error:
        return {**result, "detail": rpc_error_text(error)}
    return {**result, **measured, "outcome": OK, "peak_rss_mb": rss.peak_rss / MB}


def format_event_latency(latency: dict[str, Any]) -> str:
    head = f"{latency['backend']:<10} event latency (watcher process, "
    if latency["outcome"] != OK:
        return f"{head}...): {latency['outcome']} ({latency.get('detail', '')})"
    done, everything = latency["completed"], latency["all_events"]
    e2e = latency["create_to_completed_received"]
    return (
        f"{head}{latency['samples']} single-task trees): 'completed' event "
        f"p50 {done['p50_ms']:.2f} ms, p99 {done['p99_ms']:.2f} ms (max {done['max_ms']:.2f}); "
        f"all events p50 {everything['p50_ms']:.2f}, p99 {everything['p99_ms']:.2f} ms; "
        f"create sent -> completed received p50 {e2e['p50_ms']:.2f}, p99 {e2e['p99_ms']:.2f} ms"
    )
