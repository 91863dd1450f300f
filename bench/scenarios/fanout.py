"""Fan-out: one flat tree run unwatched, then with 1 and with 100 subscribers (in up to 4
watcher processes); timed from ExecuteTask until the last subscriber has the root's
terminal event. Each line is the median of a few runs, each on a fresh server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from connection import client_config
from harness import (
    ERROR,
    OK,
    POLL_INTERVAL_S,
    TIMEOUT,
    Backend,
    log,
    num,
    rpc_error_text,
    started_server,
    tree_request,
)
from sampler import MB, RssSampler
from taskgrove import AsyncClient, TaskgroveError
from taskgrove.v1 import task_service_pb2
from trees import ROOT_ID, flat
from watcher import WatcherProcess, monotonic

FANOUT_TASKS = 10_000
FANOUT_SUBSCRIBERS = (1, 100)
FANOUT_PROCESSES = 4
"""Subscriber client processes for a fan-out run (streams are split between them)."""


@dataclass(slots=True)
class FanoutRun:
    backend: str
    tasks: int
    subscribers: int
    processes: int = 0
    outcome: str = ERROR
    seconds: float | None = None
    """ExecuteTask sent -> the last subscriber received the root's terminal event (or,
    without subscribers, a GetTask poll saw it terminal)."""
    events: int = 0
    """Events received by all subscribers together."""
    events_per_s: float | None = None
    per_stream_events: list[int] = field(default_factory=list)
    reconnects: int = 0
    first_done_seconds: float | None = None
    slowdown_pct: float | None = None
    """seconds / seconds of the unwatched run - 1, in percent."""
    peak_rss_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""
    samples_seconds: list[float] = field(default_factory=list)
    """`seconds` of every repeat; the other fields are those of the median repeat."""


async def _snapshot_sequence(client: AsyncClient, root_id: str) -> int:
    """The event sequence as of now, for the tree of `root_id` (one snapshot)."""
    stream = client.watch(root_id=root_id, include_snapshot=True)
    async with contextlib.aclosing(stream):  # ends the watch on the server at once
        async for item in stream:
            return item.sequence
    raise RuntimeError("the watch ended without a snapshot")


async def _until_finished(client: AsyncClient, root_id: str) -> None:
    """GetTask on the root every POLL_INTERVAL_S until it is terminal (caller bounds it)."""
    while True:
        if (await client.get_task(root_id)).is_finished:
            return
        await asyncio.sleep(POLL_INTERVAL_S)


async def measure_fanout(address: str, request: Any, run: FanoutRun, limit_s: float) -> None:
    watchers: list[WatcherProcess] = []
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        try:
            async with asyncio.timeout(limit_s):
                reply = await client.stub.CreateTaskTree(request)
                root_id = reply.task_ids[ROOT_ID]
                if run.subscribers:
                    after = await _snapshot_sequence(client, root_id)
                    run.processes = min(run.subscribers, FANOUT_PROCESSES)
                    for index in range(run.processes):
                        streams = run.subscribers // run.processes + (
                            1 if index < run.subscribers % run.processes else 0
                        )
                        watcher = WatcherProcess(
                            [
                                "fanout",
                                "--address",
                                address,
                                "--root",
                                root_id,
                                "--after",
                                str(after),
                                "--streams",
                                str(streams),
                                "--max-seconds",
                                str(limit_s),
                            ]
                        )
                        watchers.append(watcher)
                        await watcher.start()
                    for watcher in watchers:
                        if (line := await watcher.line()) != "ready":
                            raise RuntimeError(f"unexpected watcher output: {line}")
                start = monotonic()
                await client.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=root_id))
                if not watchers:
                    await _until_finished(client, root_id)
                    run.seconds = monotonic() - start
                else:
                    summaries = [json.loads(await watcher.line()) for watcher in watchers]
                    run.seconds = max(s["done_at"] for s in summaries) - start
                    run.first_done_seconds = min(s["first_done_at"] for s in summaries) - start
                    run.events = sum(s["events"] for s in summaries)
                    run.reconnects = sum(s["reconnects"] for s in summaries)
                    run.per_stream_events = sorted(
                        {n for s in summaries for n in s["per_stream_events"]}
                    )
                    run.events_per_s = run.events / run.seconds
                    root_statuses = {status for s in summaries for status in s["root_statuses"]}
                    if root_statuses != {"TASK_STATUS_COMPLETED"}:
                        raise RuntimeError(f"root ended {sorted(root_statuses)}")
            run.outcome = OK
        except TimeoutError:
            run.outcome = TIMEOUT
            run.detail = f"not finished after {limit_s:g} s"
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError, ValueError) as error:
            run.detail = rpc_error_text(error)
        finally:
            for watcher in watchers:
                await watcher.stop()


def _fanout_once(
    backend: Backend, subscribers: int, request: Any, workdir: Path, args: argparse.Namespace
) -> FanoutRun:
    run = FanoutRun(backend.name, args.fanout_tasks, subscribers)
    try:
        with (
            started_server(backend, f"fanout-{subscribers}", workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            asyncio.run(measure_fanout(server.address, request, run, args.timeout))
        run.peak_rss_mb = rss.peak_rss / MB
        run.server_cpu_seconds = rss.cpu_seconds
    except RuntimeError as error:
        run.detail = str(error)
    return run


def run_fanout(backend: Backend, workdir: Path, args: argparse.Namespace) -> list[FanoutRun]:
    """The same flat tree unwatched, then with each number of subscribers; each
    `args.fanout_repeats` times on a fresh server, keeping the median run."""
    request = tree_request(flat(args.fanout_tasks), execute=False)
    runs = []
    for subscribers in (0, *args.fanout_subscribers):
        log(f"[bench] {backend.name} fan-out {args.fanout_tasks:,} x {subscribers} ...")
        repeats = [
            _fanout_once(backend, subscribers, request, workdir, args)
            for _ in range(max(1, args.fanout_repeats))
        ]
        done = sorted(
            (run for run in repeats if run.outcome == OK and run.seconds is not None),
            key=lambda run: run.seconds or 0.0,
        )
        if len(done) == len(repeats):
            chosen = done[(len(done) - 1) // 2]
            chosen.samples_seconds = [run.seconds or 0.0 for run in repeats]
        else:
            chosen = next(run for run in repeats if run.outcome != OK)
        log(
            f"[bench]   {chosen.outcome} {[round(run.seconds or 0, 3) for run in repeats]} s "
            f"{chosen.detail}".rstrip()
        )
        runs.append(chosen)
    base = runs[0].seconds if runs and runs[0].outcome == OK else None
    for run in runs[1:]:
        if base and run.seconds is not None:
            run.slowdown_pct = 100 * (run.seconds / base - 1)
    return runs


def format_fanout(runs: Sequence[FanoutRun]) -> str:
    header = (
        f"{'backend':<10} {'fan-out tasks':>13} {'watchers':>8} {'seconds':>8} "
        f"{'slowdown':>9} {'events':>10} {'events/s':>10} {'server CPU s':>12} "
        f"{'peak RSS MB':>11}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        seconds = num(run.seconds, 3) if run.outcome == OK else run.outcome
        slowdown = "-" if run.slowdown_pct is None else f"{run.slowdown_pct:+.0f} %"
        lines.append(
            f"{run.backend:<10} {run.tasks:>13,} {run.subscribers:>8} {seconds:>8} "
            f"{slowdown:>9} {run.events:>10,} {num(run.events_per_s, 0):>10} "
            f"{run.server_cpu_seconds:>12.2f} {run.peak_rss_mb:>11,.0f}"
        )
    return "\n".join(lines)
