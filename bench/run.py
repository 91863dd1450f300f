"""taskgrove benchmark: tree throughput (polled and watched), event latency, watcher fan-out
and CreateTaskTree latency against a real server, on SQLite and (when reachable) PostgreSQL.

Every scenario starts its own `taskgrove serve` subprocess on 127.0.0.1 with a fresh
database (a new SQLite file, or a new PostgreSQL database dropped afterwards), so numbers
are comparable. See bench/README.md for the method.

    .venv/bin/python bench/run.py [--quick | --sizes 1000,10000] [--shapes flat,chain] [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from pgdb import PgServer
from sampler import MB, RssSampler
from taskgrove import AsyncClient, TaskgroveError, statuses, task_message
from taskgrove.domain import wire
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.testing import ServerProcess, sqlite_url
from trees import ROOT_ID, SHAPES, TaskDict, flat, leaf, leaf_count
from watcher import Followed, follow_root, monotonic

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WATCHER_SCRIPT = BENCH_DIR / "watcher.py"
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000,)
CHAIN_MAX = 10_000
"""`chain` runs one task after another: larger chains are left out."""
POLL_INTERVAL_S = 0.02
CREATE_LATENCY_TASKS = 1_000
EVENT_LATENCY_SAMPLES = 300
FANOUT_TASKS = 10_000
FANOUT_SUBSCRIBERS = (1, 100)
FANOUT_PROCESSES = 4
"""Subscriber client processes for a fan-out run (streams are split between them)."""
DEFAULT_PG_URL = "postgresql+asyncpg://taskgrove:taskgrove@127.0.0.1/taskgrove_bench"
SQLITE, POSTGRES = "sqlite", "postgresql"
POLL, WATCH = "poll", "watch"

OK, TIMEOUT, ERROR, FAILED = "OK", "TIMEOUT", "ERROR", "FAILED"


@dataclass(slots=True)
class Backend:
    name: str
    pg: PgServer | None = None


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
    peak_rss_mb: float = 0.0
    vm_hwm_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""


# ---------------------------------------------------------------------------- helpers


def tree_request(tasks: Sequence[TaskDict], *, execute: bool) -> Any:
    """The CreateTaskTree request, built before any timer starts."""
    # The harness needs only the ids back: the BASIC view spares the server (and this
    # client) an echo of every task, which at 100,000 tasks costs hundreds of MB.
    return task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_message(**task) for task in tasks],
        execute=execute,
        view=task_service_pb2.TASK_VIEW_BASIC,
    )


def _rpc_error_text(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pyspy_path() -> str:
    """py-spy next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    return found


def profiler(profile_dir: Path | None, rate: int, name: str) -> list[str]:
    """The `py-spy record` command prefix writing `profile_dir`/`name`.txt (collapsed
    stacks), or none without `profile_dir`."""
    if profile_dir is None:
        return []
    profile_dir.mkdir(parents=True, exist_ok=True)
    output = profile_dir / f"{name}.txt"
    record = [pyspy_path(), "record", "--nonblocking", "--threads", "--format", "raw"]
    return [*record, "--rate", str(rate), "-o", str(output), "--"]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _summary_ms(values_s: Sequence[float]) -> dict[str, float] | None:
    if not values_s:
        return None
    ms = [value * 1000 for value in values_s]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


@contextlib.contextmanager
def started_server(
    backend: Backend, name: str, workdir: Path, args: argparse.Namespace
) -> Iterator[ServerProcess]:
    """A fresh database (SQLite file, or a new PostgreSQL database dropped afterwards) and
    a server process on it (its output in `server.log`), stopped by PID on exit. Raises
    RuntimeError when the server (or its database) does not start."""
    directory = workdir / f"{backend.name}-{name}"
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if backend.pg is not None:
            db_url = stack.enter_context(backend.pg.fresh_database(name))
        else:
            db_url = sqlite_url(directory / "bench.db")
        server = ServerProcess(
            db_url,
            log_path=directory / "server.log",
            wrapper=profiler(args.profile, args.profile_rate, f"{backend.name}-{name}"),
        )
        stack.enter_context(server)
        yield server


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


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task


# ---------------------------------------------------------------------------- throughput


async def measure_tree(address: str, request: Any, run: Run, args: argparse.Namespace) -> None:
    """CreateTaskTree(execute=False), then (watch mode: open the watch and wait for its
    snapshot) ExecuteTask on the root, timed until the root is seen terminal."""
    limit_s: float = args.timeout
    root_id = ""
    follower: asyncio.Task[Followed] | None = None
    async with AsyncClient(address, timeout=limit_s) as client:
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
                    await _cancel(waiter)
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
            run.detail = _rpc_error_text(error)
        finally:
            await _cancel(follower)
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
        with (
            started_server(backend, name, workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            asyncio.run(measure_tree(server.address, request, run, args))
            log_tail = server.log_tail() if run.outcome != OK else ""
    except RuntimeError as error:  # the server (or its database) did not start
        run.outcome = ERROR
        run.detail = str(error)
        return run
    run.peak_rss_mb = rss.peak_rss / MB
    run.vm_hwm_mb = rss.hwm / MB
    run.server_cpu_seconds = rss.cpu_seconds
    if log_tail:
        run.detail += f"\nserver log tail:\n{log_tail}"
    return run


# ---------------------------------------------------------------------------- event latency


class WatcherProcess:
    """`bench/watcher.py` as a subprocess whose stdout lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        self.args = [sys.executable, str(WATCHER_SCRIPT), *args]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )

    async def line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            stderr = b""
            if self.process.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        stderr = await self.process.stderr.read()
            raise RuntimeError(f"watcher process ended: {stderr.decode(errors='replace')[-2000:]}")
        return raw.decode().strip()

    async def stop(self) -> None:
        """SIGTERM its PID, a bounded wait, SIGKILL if needed."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


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
            async with AsyncClient(address, timeout=limit_s) as client:
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
        await _cancel(reader)
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
        "completed": _summary_ms(by_status.get("TASK_STATUS_COMPLETED", [])),
        "by_status": {status: _summary_ms(values) for status, values in by_status.items()},
        "all_events": _summary_ms(everything),
        "create_to_completed_received": _summary_ms(end_to_end),
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
        return {**result, "detail": _rpc_error_text(error)}
    return {**result, **measured, "outcome": OK, "peak_rss_mb": rss.peak_rss / MB}


# ---------------------------------------------------------------------------- fan-out


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
    async for item in client.watch(root_id=root_id, include_snapshot=True):
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
    async with AsyncClient(address, timeout=limit_s) as client:
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
            run.detail = _rpc_error_text(error)
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
        _log(f"[bench] {backend.name} fan-out {args.fanout_tasks:,} x {subscribers} ...")
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
        _log(
            f"[bench]   {chosen.outcome} {[round(run.seconds or 0, 3) for run in repeats]} s "
            f"{chosen.detail}".rstrip()
        )
        runs.append(chosen)
    base = runs[0].seconds if runs and runs[0].outcome == OK else None
    for run in runs[1:]:
        if base and run.seconds is not None:
            run.slowdown_pct = 100 * (run.seconds / base - 1)
    return runs


# ---------------------------------------------------------------------------- create latency


async def measure_creates(address: str, request: Any, count: int, limit_s: float) -> list[float]:
    """Round trips of `count` CreateTaskTree calls, one after another."""
    samples = []
    async with AsyncClient(address, timeout=limit_s) as client:
        async with asyncio.timeout(limit_s):
            for _ in range(count):
                start = time.perf_counter()
                await client.stub.CreateTaskTree(request)
                samples.append(time.perf_counter() - start)
    return samples


def run_create_latency(
    backend: Backend, size: int, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """CreateTaskTree(execute=False) of a flat tree: one warm-up call, then
    `args.latency_repeats` timed ones."""
    timeout: float = args.timeout
    request = tree_request(flat(size), execute=False)
    result: dict[str, Any] = {
        "backend": backend.name,
        "shape": "flat",
        "tasks": size,
        "total_tasks": size + 1,
    }
    try:
        with (
            started_server(backend, f"create-{size}", workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            samples = asyncio.run(
                measure_creates(server.address, request, args.latency_repeats + 1, timeout)
            )
    except TimeoutError:
        return {**result, "outcome": TIMEOUT, "detail": f"not done after {timeout:g} s"}
    except (RuntimeError, grpc.aio.AioRpcError) as error:
        return {**result, "outcome": ERROR, "detail": _rpc_error_text(error)}
    timed = samples[1:]
    return {
        **result,
        "outcome": OK,
        "warmup_seconds": samples[0],
        "samples_seconds": timed,
        "median_seconds": statistics.median(timed),
        "min_seconds": min(timed),
        "max_seconds": max(timed),
        "peak_rss_mb": rss.peak_rss / MB,
    }


# ---------------------------------------------------------------------------- output


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pair(poll: float | None, watch: float | None, digits: int) -> str:
    return f"{_num(poll, digits)}/{_num(watch, digits)}"


def format_table(runs: Sequence[Run]) -> str:
    """One line per (backend, shape, size): the poll and watch runs side by side."""
    header = (
        f"{'backend':<10} {'shape':<9} {'tasks':>7} {'create s':>13} "
        f"{'poll s':>8} {'poll t/s':>9} {'watch s':>8} {'watch t/s':>9} {'events':>8} "
        f"{'RSS MB':>11}"
    )
    header2 = (
        f"{'':<10} {'':<9} {'':>7} {'poll/watch':>13} {'':>8} {'':>9} {'':>8} {'':>9} "
        f"{'':>8} {'poll/watch':>11}"
    )
    lines = [header, header2, "-" * len(header)]
    grouped: dict[tuple[str, str, int], dict[str, Run]] = {}
    for run in runs:
        grouped.setdefault((run.backend, run.shape, run.tasks), {})[run.mode] = run
    for (backend, shape, tasks), modes in grouped.items():
        poll, watch = modes.get(POLL), modes.get(WATCH)

        def seconds(run: Run | None) -> str:
            if run is None:
                return "-"
            return _num(run.seconds, 3) if run.outcome == OK else run.outcome

        def attr(run: Run | None, name: str) -> float | None:
            return None if run is None else getattr(run, name)

        create = _pair(attr(poll, "create_seconds"), attr(watch, "create_seconds"), 3)
        rss = _pair(attr(poll, "peak_rss_mb"), attr(watch, "peak_rss_mb"), 0)
        events = f"{watch.events:,}" if watch is not None and watch.outcome == OK else "-"
        lines.append(
            f"{backend:<10} {shape:<9} {tasks:>7,} {create:>13} "
            f"{seconds(poll):>8} {_num(attr(poll, 'tasks_per_s'), 0):>9} "
            f"{seconds(watch):>8} {_num(attr(watch, 'tasks_per_s'), 0):>9} {events:>8} "
            f"{rss:>11}"
        )
    return "\n".join(lines)


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


def format_fanout(runs: Sequence[FanoutRun]) -> str:
    header = (
        f"{'backend':<10} {'fan-out tasks':>13} {'watchers':>8} {'seconds':>8} "
        f"{'slowdown':>9} {'events':>10} {'events/s':>10} {'server CPU s':>12} "
        f"{'peak RSS MB':>11}"
    )
    lines = [header, "-" * len(header)]
    for run in runs:
        seconds = _num(run.seconds, 3) if run.outcome == OK else run.outcome
        slowdown = "-" if run.slowdown_pct is None else f"{run.slowdown_pct:+.0f} %"
        lines.append(
            f"{run.backend:<10} {run.tasks:>13,} {run.subscribers:>8} {seconds:>8} "
            f"{slowdown:>9} {run.events:>10,} {_num(run.events_per_s, 0):>10} "
            f"{run.server_cpu_seconds:>12.2f} {run.peak_rss_mb:>11,.0f}"
        )
    return "\n".join(lines)


def format_create_latency(latency: dict[str, Any]) -> str:
    head = (
        f"{latency['backend']:<10} CreateTaskTree latency "
        f"({latency['tasks']:,} tasks, execute=False):"
    )
    if latency["outcome"] != OK:
        return f"{head} {latency['outcome']} ({latency.get('detail', '')})"
    return (
        f"{head} median {latency['median_seconds'] * 1000:,.1f} ms "
        f"(min {latency['min_seconds'] * 1000:,.1f}, max {latency['max_seconds'] * 1000:,.1f}, "
        f"{len(latency['samples_seconds'])} runs after 1 warm-up)"
    )


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_mb": psutil.virtual_memory().total // MB,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def revision() -> dict[str, Any]:
    """The code measured: the checkout's commit (and whether server/ or client/ differ from
    it), or, when the server code comes from elsewhere on PYTHONPATH (an exported revision),
    $TASKGROVE_BENCH_REVISION."""

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import taskgrove_server

    code = Path(taskgrove_server.__file__).resolve().parent
    exported = not code.is_relative_to(REPO_DIR)
    if exported:
        commit = os.environ.get("TASKGROVE_BENCH_REVISION", "unknown")
        label = f"{commit} (exported to {code.parent})"
    else:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "server", "client"))
        label = commit + (" + uncommitted server/client changes" if dirty else "")
    return {"commit": commit, "label": label, "server_code": str(code), "exported": exported}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a .tmp file next to it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _choice_list(known: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [item for item in chosen if item not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {list(known)}")
        return chosen

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--sizes",
        type=_int_list,
        help="leaf counts (default 1000,10000,100000; chain stops at 10,000)",
    )
    sizes.add_argument(
        "--quick",
        action="store_true",
        help="1,000 tasks only, 100 latency samples, fan-out on 1,000 tasks",
    )
    parser.add_argument("--shapes", type=_choice_list(list(SHAPES)), default=list(SHAPES))
    parser.add_argument(
        "--modes", type=_choice_list([POLL, WATCH]), default=[POLL, WATCH], help="poll,watch"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="per-scenario limit in seconds"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL_S,
        help="seconds between GetTask polls of the root (poll mode)",
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server and prefix")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--pg-only", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--no-pg-fanout", action="store_true", help="run the fan-out on SQLite only"
    )
    parser.add_argument("--event-samples", type=int, default=EVENT_LATENCY_SAMPLES)
    parser.add_argument("--no-event-latency", action="store_true")
    parser.add_argument("--fanout-tasks", type=int, default=FANOUT_TASKS)
    parser.add_argument("--fanout-subscribers", type=_int_list, default=list(FANOUT_SUBSCRIBERS))
    parser.add_argument(
        "--fanout-repeats", type=int, default=3, help="runs per fan-out line (median kept)"
    )
    parser.add_argument("--no-fanout", action="store_true")
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--no-latency", action="store_true", help="skip CreateTaskTree latency")
    parser.add_argument("--no-throughput", action="store_true", help="skip the tree table")
    parser.add_argument(
        "--profile", type=Path, help="record each server with py-spy into this directory"
    )
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--keep", action="store_true", help="keep SQLite files and server logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = list(QUICK_SIZES)
        args.event_samples = min(args.event_samples, 100)
        args.fanout_tasks = min(args.fanout_tasks, 1_000)
        args.fanout_repeats = 1
    elif args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    if args.no_pg and args.pg_only:
        parser.error("--no-pg and --pg-only exclude each other")
    return args


def backends(args: argparse.Namespace) -> tuple[list[Backend], str]:
    """The backends to run, and a note on PostgreSQL when it is left out."""
    chosen = [] if args.pg_only else [Backend(SQLITE)]
    if args.no_pg:
        return chosen, "PostgreSQL: not requested (--no-pg)"
    pg = PgServer(args.pg_url)
    reachable, info = pg.reachable()
    if not reachable:
        return chosen, f"PostgreSQL rows skipped: {pg.safe_url} not reachable ({info})"
    return [*chosen, Backend(POSTGRES, pg)], f"PostgreSQL {info} at {pg.safe_url}"


@dataclass(slots=True)
class Results:
    runs: list[Run] = field(default_factory=list)
    event_latency: list[dict[str, Any]] = field(default_factory=list)
    fanout: list[FanoutRun] = field(default_factory=list)
    create_latency: list[dict[str, Any]] = field(default_factory=list)

    def failed(self) -> bool:
        return (
            any(run.outcome != OK for run in self.runs)
            or any(item["outcome"] != OK for item in self.event_latency)
            or any(run.outcome != OK for run in self.fanout)
            or any(item["outcome"] != OK for item in self.create_latency)
        )


def run_all(args: argparse.Namespace, chosen: Sequence[Backend], workdir: Path) -> Results:
    results = Results()
    for backend in chosen:
        if not args.no_throughput:
            for shape in args.shapes:
                for size in args.sizes:
                    if shape == "chain" and size > CHAIN_MAX:
                        continue
                    for mode in args.modes:
                        _log(f"[bench] {backend.name} {shape} {size:,} {mode} ...")
                        run = run_throughput(backend, shape, size, mode, workdir, args)
                        results.runs.append(run)
                        _log(
                            f"[bench]   {run.outcome} {_num(run.seconds, 3)} s "
                            f"(create {_num(run.create_seconds, 3)} s) {run.detail}".rstrip()
                        )
        if not args.no_event_latency:
            _log(f"[bench] {backend.name} event latency x {args.event_samples} ...")
            latency = run_event_latency(backend, workdir, args)
            results.event_latency.append(latency)
            _log(f"[bench]   {format_event_latency(latency)}")
        if not args.no_fanout and (backend.pg is None or not args.no_pg_fanout):
            results.fanout.extend(run_fanout(backend, workdir, args))
        if not args.no_latency:
            _log(f"[bench] {backend.name} CreateTaskTree latency {CREATE_LATENCY_TASKS:,} ...")
            results.create_latency.append(
                run_create_latency(backend, CREATE_LATENCY_TASKS, workdir, args)
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    chosen, pg_note = backends(args)
    _log(f"[bench] {pg_note}")
    workdir = Path(tempfile.mkdtemp(prefix="taskgrove-bench-"))
    clock = time.monotonic()
    try:
        results = run_all(args, chosen, workdir)
    finally:
        if args.keep:
            _log(f"[bench] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - clock
    rev = revision()
    if results.runs:
        print(format_table(results.runs))
    for latency in results.event_latency:
        print(format_event_latency(latency))
    if results.fanout:
        print(format_fanout(results.fanout))
    for latency in results.create_latency:
        print(format_create_latency(latency))
    print(
        f"{pg_note}. Code: {rev['label']}. {os.cpu_count()} CPUs, "
        f"load {load_at_start:.1f} -> {os.getloadavg()[0]:.1f}, {elapsed / 60:.1f} min."
    )
    write_json(
        args.json,
        {
            "started_at": started.isoformat(timespec="seconds"),
            "elapsed_seconds": elapsed,
            "revision": rev,
            "machine": {**machine(), "loadavg_1m_at_start": load_at_start},
            "postgresql": pg_note,
            "settings": {
                "poll_interval_s": args.poll_interval,
                "poll_method": "GetTask on the root, one at a time, poll_interval_s apart",
                "watch_method": "WatchEvents(root_id, include_snapshot) opened before "
                "ExecuteTask; stops at the root's terminal status event",
                "timed_from": "send of ExecuteTask (CreateTaskTree(execute=False) timed apart)",
                "timeout_s": args.timeout,
                "leaf": "sleep_executor {'seconds': 0}",
                "sizes": args.sizes,
                "chain_max": CHAIN_MAX,
                "profiled": args.profile is not None,
            },
            "throughput": [asdict(run) for run in results.runs],
            "event_latency": results.event_latency,
            "fanout": [asdict(run) for run in results.fanout],
            "create_tree_latency": results.create_latency,
        },
    )
    print(f"results: {args.json}")
    return 1 if results.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
