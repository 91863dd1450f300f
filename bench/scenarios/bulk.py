"""The bulk path in one call: `CreateTaskTree(execute=True)` of a `trees.py` shape, then one
WatchEvents stream on the root from sequence 0 (the server replays whatever happened before
the stream opened, so nothing is missed). Timed from sending CreateTaskTree until the
message carrying the root's terminal status event arrives."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from connection import client_config
from harness import (
    ERROR,
    FAILED,
    OK,
    TIMEOUT,
    Backend,
    on_fresh_server,
    rpc_error_text,
    tree_request,
)
from taskgrove import AsyncClient, TaskgroveError
from trees import ROOT_ID, SHAPES, leaf_count
from watcher import follow_root, monotonic


@dataclass(slots=True)
class BulkRun:
    shape: str
    tasks: int
    outcome: str = ERROR
    seconds: float | None = None
    """Send of CreateTaskTree(execute=True) -> the root's terminal event received."""
    create_seconds: float | None = None
    """The CreateTaskTree round trip alone (the tree already runs meanwhile)."""
    events: int = 0
    peak_rss_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""


async def measure_bulk(address: str, request: Any, run: BulkRun, limit_s: float) -> None:
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        try:
            async with asyncio.timeout(limit_s):
                start = monotonic()
                reply = await client.stub.CreateTaskTree(request)
                run.create_seconds = monotonic() - start
                followed = await follow_root(client.stub, reply.task_ids[ROOT_ID])
            run.seconds = followed.done_at - start
            run.events = followed.events
            if followed.root_status == "TASK_STATUS_COMPLETED":
                run.outcome = OK
            else:
                run.outcome, run.detail = FAILED, f"root ended {followed.root_status}"
        except TimeoutError:
            run.outcome, run.detail = TIMEOUT, f"not done after {limit_s:g} s"
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError) as error:
            run.outcome, run.detail = ERROR, rpc_error_text(error)


def run_bulk(
    backend: Backend, shape: str, size: int, workdir: Path, args: argparse.Namespace
) -> BulkRun:
    """One fresh server, one tree created and executed in one CreateTaskTree call."""
    tasks = SHAPES[shape](size)
    request = tree_request(tasks, execute=True)  # built before the clock starts
    run = BulkRun(shape, leaf_count(tasks))
    on_fresh_server(
        backend,
        f"bulk-{shape}-{size}",
        workdir,
        args,
        run,
        lambda address: measure_bulk(address, request, run, args.timeout),
    )
    return run
