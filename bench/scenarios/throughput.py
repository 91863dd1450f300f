"""Throughput: one tree (flat, chain or balanced) created with execute=False, then executed;
timed from ExecuteTask until the root is seen terminal, by GetTask polls (`poll`) or by one
WatchEvents stream opened before (`watch`). One table line per backend, shape and size."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator, Sequence
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
    cancel,
    gc_stats,
    num,
    rpc_error_text,
    started_server,
    summary_ms,
    tree_request,
)
from sampler import MB, RssSampler
from taskgrove import AsyncClient, TaskgroveError, statuses
from taskgrove.domain import wire
from taskgrove.v1 import task_pb2, task_service_pb2
from trees import ROOT_ID, SHAPES, leaf_count
from watcher import Followed, follow_root, monotonic

POLL, WATCH = "poll", "watch"
CHAIN_MAX = 10_000
"""`chain` runs one task after another: larger chains are left out."""


@dataclass(slots=True)
class Run:
    """One throughput scenario: a fresh server, one tree, one way of seeing it finish.
    `tasks` counts executable (leaf) tasks; tasks/s uses it."""

    backend: str
    shape: str
    tasks: int
    total_tasks: int
    """Including groups (the root and, for `balanced`, the inner groups)."""
    mode: str
    """`poll`: GetTask on the root every poll interval. `watch`: one WatchEvents stream on
    the root, started (with a snapshot) before ExecuteTask."""
    outcome: str = ERROR
    create_seconds: float | None = None
    """Round trip of CreateTaskTree(execute=False) alone."""
    execute_seconds: float | None = None
    """Round trip of ExecuteTask alone."""
    seconds: float | None = None
    """Send of ExecuteTask -> the root seen terminal (poll reply / watch event arrival)."""
    tasks_per_s: float | None = None
    root_status: str = ""
    polls: int = 0
    poll_ms_mean: float | None = None
    events: int = 0
    """Watch mode: events received after the snapshot, up to the root's terminal one."""
    watch_messages: int = 0
    reconnects: int = 0
    snapshot_seconds: float | None = None
    """Watch mode: from opening the stream to receiving the snapshot (not timed)."""
    running_ms: dict[str, float] | None = None
    """The leaves' recorded running time (end_time - start_time as the server stored them,
    read back with ListTasks after the run): count, p50, p90, p99, max, mean."""
    gc: dict[str, float] | None = None
    """The server's garbage collections (its `taskgrove gc stats:` line at shutdown):
    per generation `genN_collections`, `genN_seconds`, `genN_max_seconds`..."""
    peak_rss_mb: float = 0.0
    end_rss_mb: float = 0.0
    """The server's RSS once the tree finished (what the run left behind)."""
    vm_hwm_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""


async def _poll_root(
    client: AsyncClient, root_id: str, interval_s: float, run: Run
) -> tuple[float, str]:
    """GetTask on the root every `interval_s` until terminal: (when seen, status)."""
    poll_seconds = 0.0
    while True:
        sent = time.perf_counter()
        task = await client.get_task(root_id)
        seen = time.perf_counter()
        poll_seconds += seen - sent
        run.polls += 1
        if task.is_finished:
            run.poll_ms_mean = 1000 * poll_seconds / run.polls
            return seen, task.status
        await asyncio.sleep(interval_s)


async def running_seconds(address: str) -> list[float]:
    """end_time - start_time of every stored leaf (the server holds only this tree)."""
    async with AsyncClient(config=client_config(address, timeout=600)) as client:
        return await _running_seconds(client)


async def _running_seconds(client: AsyncClient) -> list[float]:
    seconds = []
    token = ""
    while True:
        request = task_service_pb2.ListTasksRequest(page_size=1000, page_token=token)
        reply = await client.stub.ListTasks(request)
        for task in reply.tasks:
            if not task.has_children and task.HasField("end_time"):
                ended = task.end_time.ToMicroseconds()
                seconds.append((ended - task.start_time.ToMicroseconds()) / 1e6)
        token = reply.next_page_token
        if not token:
            return seconds


async def _describe_root(client: AsyncClient, root_id: str) -> str:
    """After a timeout: where the root got to (best effort)."""
    if not root_id:
        return "the tree was not created"
    try:
        async with asyncio.timeout(30):
            task = await client.get_task(root_id)
    except (TimeoutError, TaskgroveError) as error:
        return f"root unreadable: {error}"
    return f"root {task.status}, progress {task.progress:.3f}"


async def measure_tree(address: str, request: Any, run: Run, args: argparse.Namespace) -> None:
    """CreateTaskTree(execute=False), then (watch mode: open the watch and wait for its
    snapshot) ExecuteTask on the root, timed until the root is seen terminal."""
    limit_s: float = args.timeout
    root_id = ""
    follower: asyncio.Task[Followed] | None = None
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        try:
            async with asyncio.timeout(limit_s):
                start = time.perf_counter()
                reply = await client.stub.CreateTaskTree(request)
                run.create_seconds = time.perf_counter() - start
                root_id = reply.task_ids[ROOT_ID]
                if run.mode == WATCH:
                    ready = asyncio.Event()
                    opened = time.perf_counter()
                    follower = asyncio.create_task(
                        follow_root(client.stub, root_id, include_snapshot=True, ready=ready)
                    )
                    waiter = asyncio.create_task(ready.wait())
                    await asyncio.wait({waiter, follower}, return_when=asyncio.FIRST_COMPLETED)
                    await cancel(waiter)
                    if follower.done():
                        follower.result()  # raises what ended it
                    run.snapshot_seconds = time.perf_counter() - opened
                execute = task_service_pb2.ExecuteTaskRequest(id=root_id)
                start = time.perf_counter()
                start_mono = monotonic()
                await client.stub.ExecuteTask(execute)
                run.execute_seconds = time.perf_counter() - start
                if follower is None:
                    seen, run.root_status = await _poll_root(
                        client, root_id, args.poll_interval, run
                    )
                    run.seconds = seen - start
                else:
                    followed = await follower
                    run.seconds = followed.done_at - start_mono
                    run.root_status = wire.status_from_proto(
                        task_pb2.TaskStatus.Value(followed.root_status)
                    )
                    run.events = followed.events
                    run.watch_messages = followed.messages
                    run.reconnects = followed.reconnects
            run.outcome = OK
        except TimeoutError:
            run.outcome = TIMEOUT
            run.detail = f"not finished after {limit_s:g} s; " + await _describe_root(
                client, root_id
            )
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError) as error:
            run.outcome = ERROR
            run.detail = rpc_error_text(error)
        finally:
            await cancel(follower)
    if run.outcome == OK and run.root_status != statuses.COMPLETED:
        run.outcome = FAILED
        run.detail = f"root ended {run.root_status}"
    if run.outcome == OK and run.seconds:
        run.tasks_per_s = run.tasks / run.seconds


def run_throughput(
    backend: Backend, shape: str, size: int, mode: str, workdir: Path, args: argparse.Namespace
) -> Run:
    """One fresh server, one tree of `size` leaves, timed from ExecuteTask to completion."""
    tasks = SHAPES[shape](size)
    request = tree_request(tasks, execute=False)
    run = Run(backend.name, shape, leaf_count(tasks), len(tasks), mode)
    name = f"{shape}-{size}-{mode}"
    try:
        with started_server(backend, name, workdir, args) as server:
            with RssSampler(server.pid) as rss:
                asyncio.run(measure_tree(server.address, request, run, args))
                log_tail = server.log_tail() if run.outcome != OK else ""
            server.stop()
            run.gc = gc_stats(server)
            if run.outcome == OK:
                # Read back by a server started again on the same database, so that the
                # reads count in neither the RSS nor the garbage collections (nor the
                # profile) of the run.
                server.wrapper = []
                server.start()
                run.running_ms = summary_ms(asyncio.run(running_seconds(server.address)))
    except RuntimeError as error:  # the server (or its database) did not start
        run.outcome = ERROR
        run.detail = str(error)
        return run
    run.end_rss_mb = rss.last_rss / MB
    run.peak_rss_mb = rss.peak_rss / MB
    run.vm_hwm_mb = rss.hwm / MB
    run.server_cpu_seconds = rss.cpu_seconds
    if log_tail:
        run.detail += f"\nserver log tail:\n{log_tail}"
    return run


def _pair(poll: float | None, watch: float | None, digits: int) -> str:
    return f"{num(poll, digits)}/{num(watch, digits)}"


def _attr(run: Run | None, name: str) -> float | None:
    return None if run is None else getattr(run, name)


def _side_by_side(
    runs: Sequence[Run], titles: str, subtitles: str
) -> tuple[list[str], Iterator[tuple[str, str, int, Run | None, Run | None]]]:
    """A table's header lines, and its rows: one per (backend, shape, size), with the
    poll and the watch run of it (None when that mode was not run)."""
    grouped: dict[tuple[str, str, int], dict[str, Run]] = {}
    for run in runs:
        grouped.setdefault((run.backend, run.shape, run.tasks), {})[run.mode] = run
    rows = (
        (backend, shape, tasks, modes.get(POLL), modes.get(WATCH))
        for (backend, shape, tasks), modes in grouped.items()
    )
    head = f"{'backend':<10} {'shape':<9} {'tasks':>7} "
    return [head + titles, f"{'':<10} {'':<9} {'':>7} " + subtitles, "-" * len(head + titles)], rows


def format_table(runs: Sequence[Run]) -> str:
    """One line per (backend, shape, size): the poll and watch runs side by side."""
    lines, rows = _side_by_side(
        runs,
        f"{'create s':>13} {'poll s':>8} {'poll t/s':>9} {'watch s':>8} {'watch t/s':>9} "
        f"{'events':>8} {'RSS MB':>11}",
        f"{'poll/watch':>13} {'':>8} {'':>9} {'':>8} {'':>9} {'':>8} {'poll/watch':>11}",
    )

    def seconds(run: Run | None) -> str:
        if run is None:
            return "-"
        return num(run.seconds, 3) if run.outcome == OK else run.outcome

    for backend, shape, tasks, poll, watch in rows:
        create = _pair(_attr(poll, "create_seconds"), _attr(watch, "create_seconds"), 3)
        rss = _pair(_attr(poll, "peak_rss_mb"), _attr(watch, "peak_rss_mb"), 0)
        events = f"{watch.events:,}" if watch is not None and watch.outcome == OK else "-"
        lines.append(
            f"{backend:<10} {shape:<9} {tasks:>7,} {create:>13} "
            f"{seconds(poll):>8} {num(_attr(poll, 'tasks_per_s'), 0):>9} "
            f"{seconds(watch):>8} {num(_attr(watch, 'tasks_per_s'), 0):>9} {events:>8} "
            f"{rss:>11}"
        )
    return "\n".join(lines)


def _running(run: Run | None) -> str:
    """p50/p99/max of the leaves' recorded running time, in ms."""
    if run is None or run.running_ms is None:
        return "-"
    ms = run.running_ms
    return f"{ms['p50_ms']:.1f}/{ms['p99_ms']:.1f}/{ms['max_ms']:.0f}"


def _full_gcs(run: Run | None) -> str:
    """Full (generation 2) collections: how many / their seconds in total."""
    if run is None or run.gc is None:
        return "-"
    return f"{run.gc['gen2_collections']:.0f}/{run.gc['gen2_seconds']:.3f}"


def format_running(runs: Sequence[Run]) -> str:
    """Per (backend, shape, size), poll and watch runs: the 0 s leaves' recorded running
    time, the server's full garbage collections and its RSS once the tree finished."""
    lines, rows = _side_by_side(
        runs,
        f"{'run ms p50/p99/max':>19} {'':>19} {'full GCs n/s':>13} {'':>13} {'end RSS MB':>11}",
        f"{'poll':>19} {'watch':>19} {'poll':>13} {'watch':>13} {'poll/watch':>11}",
    )
    for backend, shape, tasks, poll, watch in rows:
        rss = _pair(_attr(poll, "end_rss_mb"), _attr(watch, "end_rss_mb"), 0)
        lines.append(
            f"{backend:<10} {shape:<9} {tasks:>7,} {_running(poll):>19} {_running(watch):>19} "
            f"{_full_gcs(poll):>13} {_full_gcs(watch):>13} {rss:>11}"
        )
    return "\n".join(lines)
