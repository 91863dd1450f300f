"""Workers: tasks run in `taskgrove worker` processes (`worker_app.py`) beside the same tree
run by the built-in in-process `sleep_executor` 0 s.

- Throughput: a flat tree of N trivial tasks (10,000) on a fresh server and database per
  run, through the built-in executor, 1 worker and 4 workers (`--worker-slots` slots each),
  the three interleaved, `--worker-repeats` rounds, medians kept. The workers connect
  before the clock starts; then CreateTaskTree(execute=False), ExecuteTask(root), and
  GetTask polls of the root every 20 ms until it is terminal. Timed from sending
  CreateTaskTree (`total`) and from sending ExecuteTask (`run`) to that poll's reply.
  Server and worker CPU: psutil `cpu_times` (user + system) of each process just before
  CreateTaskTree and just after the root was seen done.
- Latency: on an idle fresh server with one worker, single tasks one after another
  (create apart, not timed): from sending ExecuteTask to the worker function's start (its
  CLOCK_MONOTONIC, returned as the result), and to the task's `completed` event arriving
  on a WatchEvents stream (every event) opened before. The same round trip of a built-in
  `sleep_executor` 0 s task on the same server, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from connection import client_config
from harness import (
    ERROR,
    FAILED,
    OK,
    SQLITE,
    TIMEOUT,
    Backend,
    cancel,
    num,
    rpc_error_text,
    started_server,
    summary_ms,
    tree_request,
)
from processes import log_tail, service
from sampler import MB, RssSampler
from taskgrove import AsyncClient, TaskgroveError, statuses
from taskgrove._watch import watch_responses
from taskgrove.v1 import event_pb2, task_pb2, task_service_pb2
from trees import LEAF_EXECUTOR, ROOT_ID, TaskDict, flat, leaf
from watcher import monotonic
from worker_app import NOOP, PROBE

BENCH_DIR = Path(__file__).resolve().parent.parent
WORKER_TASKS = 10_000
WORKER_SLOTS = 64
"""Slots per worker: 4 x 64 = the server's default max_concurrency (256)."""
WORKER_COUNTS = (1, 4)
WORKER_REPEATS = 3
WORKER_LATENCY_SAMPLES = 300
WORKER_POLL_S = 0.02
"""GetTask polls of the root, as the throughput table's `poll` runs."""
READY_TIMEOUT_S = 60.0
IDLE_PAUSE_S = 0.005
"""Between two latency samples: the server goes idle again."""
BUILTIN = "builtin"
COMPLETED = task_pb2.TASK_STATUS_COMPLETED
STATUS_CHANGED = event_pb2.TASK_EVENT_TYPE_STATUS_CHANGED


# ---------------------------------------------------------------------------- workers


def worker_command(address: str, slots: int, name: str) -> list[str]:
    taskgrove = str(Path(sys.executable).with_name("taskgrove"))
    return [
        *[taskgrove, "worker", "worker_app:worker", "--address", address],
        *["--slots", str(slots), "--name", name],
    ]


@contextlib.contextmanager
def started_workers(
    address: str, count: int, slots: int, directory: Path
) -> Iterator[list[psutil.Process]]:
    """`count` worker processes (cwd bench/, so `worker_app` imports; PYTHONPATH passed on,
    so an exported revision runs there too), each in its own session, its output in
    `worker-N.log`, stopped by PID (`processes.stop_tree`) on exit."""
    env = {**os.environ, "TASKGROVE_LOG_LEVEL": "WARNING"}
    with contextlib.ExitStack() as stack:
        found = []
        for index in range(count):
            log_path = directory / f"worker-{index}.log"
            command = worker_command(address, slots, f"bench-{index}")
            process = stack.enter_context(service(command, env, log_path, cwd=BENCH_DIR))
            found.append((process, log_path))
        yield [psutil.Process(process.pid) for process, _ in found]
        for process, log_path in found:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited ({process.returncode}):\n{log_tail(log_path)}")


async def wait_for_workers(
    client: AsyncClient, processes: Sequence[psutil.Process], executor: str
) -> None:
    """Until `executor` lists one connected worker per process; RuntimeError when a worker
    exits or READY_TIMEOUT_S passes first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        found = [e for e in await client.list_executors() if e.id == executor]
        if found and len(found[0].workers) == len(processes):
            return
        for process in processes:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                raise RuntimeError(f"worker {process.pid} exited before it registered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(processes)} workers not registered after {READY_TIMEOUT_S}s")
        await asyncio.sleep(0.02)


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


# ---------------------------------------------------------------------------- throughput


def worker_tree(size: int, executor: str) -> list[TaskDict]:
    """`trees.flat`, its leaves run by `executor` (the built-in one: `sleep_executor` 0 s)."""
    tasks = flat(size)
    if executor != LEAF_EXECUTOR:
        for task in tasks[1:]:
            task.update(name=executor, executor=executor, inputs={})
    return tasks


@dataclass(slots=True)
class WorkerRun:
    executor: str
    workers: int
    """0: the built-in executor, in the server."""
    slots: int
    tasks: int
    repeat: int
    outcome: str = ERROR
    create_seconds: float | None = None
    """CreateTaskTree(execute=False) round trip."""
    execute_seconds: float | None = None
    """ExecuteTask round trip."""
    run_seconds: float | None = None
    """Send of ExecuteTask -> the GetTask reply that shows the root terminal."""
    total_seconds: float | None = None
    """Send of CreateTaskTree -> the same reply (creation included)."""
    server_cpu_seconds: float | None = None
    worker_cpu_seconds: float | None = None
    """All the run's worker processes together, over the same span."""
    peak_rss_mb: float = 0.0
    polls: int = 0
    detail: str = ""

    @property
    def label(self) -> str:
        return "in-process" if self.workers == 0 else f"{self.workers} x {self.slots}"


async def measure_worker_tree(
    address: str,
    request: Any,
    run: WorkerRun,
    server: psutil.Process,
    workers: Sequence[psutil.Process],
    limit_s: float,
) -> None:
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        try:
            async with asyncio.timeout(limit_s):
                if workers:
                    await wait_for_workers(client, workers, run.executor)
                server_cpu, worker_cpu = cpu_seconds([server]), cpu_seconds(workers)
                start = time.perf_counter()
                reply = await client.stub.CreateTaskTree(request)
                created = time.perf_counter()
                root_id = reply.task_ids[ROOT_ID]
                execute = task_service_pb2.ExecuteTaskRequest(id=root_id)
                sent = time.perf_counter()
                await client.stub.ExecuteTask(execute)
                executed = time.perf_counter()
                while True:
                    task = await client.get_task(root_id)
                    seen = time.perf_counter()
                    run.polls += 1
                    if task.is_finished:
                        break
                    await asyncio.sleep(WORKER_POLL_S)
                run.server_cpu_seconds = cpu_seconds([server]) - server_cpu
                run.worker_cpu_seconds = cpu_seconds(workers) - worker_cpu if workers else None
            run.create_seconds = created - start
            run.execute_seconds = executed - sent
            run.run_seconds = seen - sent
            run.total_seconds = seen - start
            if task.status == statuses.COMPLETED:
                run.outcome = OK
            else:
                run.outcome, run.detail = FAILED, f"root ended {task.status}"
        except TimeoutError:
            run.outcome, run.detail = TIMEOUT, f"not done after {limit_s:g} s"
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError, psutil.Error) as error:
            run.outcome, run.detail = ERROR, rpc_error_text(error)


def run_worker_tree(
    run: WorkerRun, request: Any, workdir: Path, args: argparse.Namespace
) -> WorkerRun:
    """One fresh server (and database), `run.workers` fresh worker processes, one tree."""
    name = f"workers-{run.workers}x{run.slots}-{run.repeat}"
    backend = Backend(SQLITE)
    try:
        with started_server(backend, name, workdir, args) as server:
            directory = workdir / f"{SQLITE}-{name}"
            with (
                RssSampler(server.pid) as rss,
                started_workers(server.address, run.workers, run.slots, directory) as workers,
            ):
                asyncio.run(
                    measure_worker_tree(
                        server.address,
                        request,
                        run,
                        psutil.Process(server.pid),
                        workers,
                        args.timeout,
                    )
                )
            if run.outcome != OK:
                run.detail += f"\nserver log tail:\n{server.log_tail()}"
    except RuntimeError as error:  # the server or a worker did not start, or died
        run.outcome, run.detail = ERROR, f"{run.detail}\n{error}".strip()
        return run
    run.peak_rss_mb = rss.peak_rss / MB
    return run


def run_worker_throughput(
    workdir: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> list[WorkerRun]:
    """Rounds of (built-in, 1 worker, 4 workers, ...), each run on a fresh server."""
    size: int = args.worker_tasks
    slots: int = args.worker_slots
    requests = {
        BUILTIN: tree_request(worker_tree(size, LEAF_EXECUTOR), execute=False),
        NOOP: tree_request(worker_tree(size, NOOP), execute=False),
    }
    runs = []
    for repeat in range(args.worker_repeats):
        for count in (0, *args.worker_counts):
            executor = LEAF_EXECUTOR if count == 0 else NOOP
            run = WorkerRun(executor, count, slots if count else 0, size, repeat)
            log(f"[bench] sqlite workers {executor} {run.label} {size:,} #{repeat + 1} ...")
            request = requests[BUILTIN if count == 0 else NOOP]
            runs.append(run_worker_tree(run, request, workdir, args))
            log(
                f"[bench]   {run.outcome} total {num(run.total_seconds, 3)} s "
                f"(create {num(run.create_seconds, 3)}, run {num(run.run_seconds, 3)}) "
                f"server CPU {num(run.server_cpu_seconds, 2)} s, "
                f"workers CPU {num(run.worker_cpu_seconds, 2)} s {run.detail}".rstrip()
            )
    return runs


def _median(runs: Sequence[WorkerRun], name: str) -> float | None:
    values = [getattr(run, name) for run in runs if getattr(run, name) is not None]
    return statistics.median(values) if values else None


def _per_task_us(seconds: float | None, tasks: int) -> float | None:
    return None if seconds is None else seconds / tasks * 1e6


def _rate(tasks: int, seconds: float | None) -> float | None:
    return tasks / seconds if seconds else None


def summarize(runs: Sequence[WorkerRun]) -> list[dict[str, Any]]:
    """One row per configuration: the medians of its OK runs."""
    grouped: dict[tuple[str, int, int, int], list[WorkerRun]] = {}
    for run in runs:
        grouped.setdefault((run.executor, run.workers, run.slots, run.tasks), []).append(run)
    rows = []
    for (executor, workers, slots, tasks), group in grouped.items():
        ok = [run for run in group if run.outcome == OK]
        total, run_s = _median(ok, "total_seconds"), _median(ok, "run_seconds")
        rows.append(
            {
                "executor": executor,
                "workers": workers,
                "slots": slots,
                "tasks": tasks,
                "label": group[0].label,
                "runs_ok": len(ok),
                "runs": len(group),
                "create_seconds": _median(ok, "create_seconds"),
                "run_seconds": run_s,
                "total_seconds": total,
                "tasks_per_s": _rate(tasks, total),
                "run_tasks_per_s": _rate(tasks, run_s),
                "server_cpu_us_per_task": _per_task_us(_median(ok, "server_cpu_seconds"), tasks),
                "worker_cpu_us_per_task": _per_task_us(_median(ok, "worker_cpu_seconds"), tasks),
                "peak_rss_mb": _median(ok, "peak_rss_mb"),
                "total_seconds_samples": [run.total_seconds for run in ok],
            }
        )
    return rows


def format_worker_throughput(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'backend':<10} {'executor':<15} {'workers':>10} {'tasks':>7} {'create s':>9} "
        f"{'run s':>7} {'total s':>8} {'tasks/s':>8} {'run t/s':>8} {'server us/t':>12} "
        f"{'worker us/t':>12} {'runs':>5}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{SQLITE:<10} {row['executor']:<15} {row['label']:>10} {row['tasks']:>7,} "
            f"{num(row['create_seconds'], 3):>9} {num(row['run_seconds'], 3):>7} "
            f"{num(row['total_seconds'], 3):>8} {num(row['tasks_per_s'], 0):>8} "
            f"{num(row['run_tasks_per_s'], 0):>8} {num(row['server_cpu_us_per_task'], 0):>12} "
            f"{num(row['worker_cpu_us_per_task'], 0):>12} "
            f"{str(row['runs_ok']) + '/' + str(row['runs']):>5}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- latency


@dataclass(slots=True)
class LatencyRun:
    samples: int
    slots: int
    outcome: str = ERROR
    detail: str = ""
    dispatch_s: list[float] = field(default_factory=list)
    """ExecuteTask sent -> the worker function started."""
    claim_to_start_s: list[float] = field(default_factory=list)
    """The task's `start_time` (the server's wall clock when it recorded the claim) -> the
    worker function started (wall clock): the server's dispatch after the claim."""
    round_trip_s: list[float] = field(default_factory=list)
    """ExecuteTask sent -> the `completed` event received (remote task)."""
    builtin_round_trip_s: list[float] = field(default_factory=list)
    """The same for a built-in `sleep_executor` 0 s task."""
    execute_rpc_s: list[float] = field(default_factory=list)
    """The ExecuteTask round trip itself (remote task)."""


class CompletedEvents:
    """One WatchEvents stream on every event: when each task's `completed` event arrived
    (CLOCK_MONOTONIC, taken before anything else is done with the message)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.arrived: dict[str, float] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        request = task_service_pb2.WatchEventsRequest(include_snapshot=True)
        responses = watch_responses(self._client.stub, request, max_reconnects=0)
        async with contextlib.aclosing(responses):
            async for response in responses:
                arrived = monotonic()
                if response.snapshot_complete:
                    self.ready.set()
                for event in response.events:
                    if event.type == STATUS_CHANGED and event.status == COMPLETED:
                        self.arrived[event.task_id] = arrived
                        self._waiting.setdefault(event.task_id, asyncio.Event()).set()
        raise RuntimeError("the watch stream ended")

    async def wait(self, task_id: str, reader: asyncio.Task[None]) -> float:
        done = asyncio.create_task(self._waiting.setdefault(task_id, asyncio.Event()).wait())
        await asyncio.wait({done, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            await cancel(done)
            reader.result()
        return self.arrived[task_id]


async def _one(
    client: AsyncClient,
    events: CompletedEvents,
    reader: asyncio.Task[None],
    executor: str,
    index: int,
) -> tuple[float, float, float, tuple[float, float] | None]:
    """One single-task tree, created (not timed) then executed: (ExecuteTask sent, its
    reply, completed event arrived: monotonic s; for the probe, (the function's start,
    monotonic s; from the task's start_time to the function's start, s), else None)."""
    task = leaf(f"{executor}-{index}", "")
    task["parent_id"] = None
    if executor != LEAF_EXECUTOR:
        task.update(name=executor, executor=executor, inputs={})
    reply = await client.stub.CreateTaskTree(tree_request([task], execute=False))
    task_id = reply.task_ids[task["id"]]
    execute = task_service_pb2.ExecuteTaskRequest(id=task_id)
    sent = monotonic()
    await client.stub.ExecuteTask(execute)
    replied = monotonic()
    arrived = await events.wait(task_id, reader)
    started = None
    if executor == PROBE:
        done = await client.get_task(task_id)
        result = done.result
        if not isinstance(result, dict) or "started_ns" not in result or not done.start_time:
            raise RuntimeError(f"unexpected probe task: {done!r}")
        claimed_us = done.start_time.timestamp() * 1e6
        started = (result["started_ns"] / 1e9, (result["started_wall_us"] - claimed_us) / 1e6)
    return sent, replied, arrived, started


async def measure_latency(
    address: str, run: LatencyRun, workers: Sequence[psutil.Process], limit_s: float
) -> None:
    reader: asyncio.Task[None] | None = None
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        try:
            async with asyncio.timeout(limit_s):
                await wait_for_workers(client, workers, PROBE)
                events = CompletedEvents(client)
                reader = asyncio.create_task(events.run())
                await events.ready.wait()
                for executor in (PROBE, LEAF_EXECUTOR):
                    for index in range(run.samples + 1):  # the first: a warm-up
                        sent, replied, arrived, started = await _one(
                            client, events, reader, executor, index
                        )
                        if index:
                            if started is None:
                                run.builtin_round_trip_s.append(arrived - sent)
                            else:
                                run.dispatch_s.append(started[0] - sent)
                                run.claim_to_start_s.append(started[1])
                                run.round_trip_s.append(arrived - sent)
                                run.execute_rpc_s.append(replied - sent)
                        await asyncio.sleep(IDLE_PAUSE_S)
            run.outcome = OK
        except TimeoutError:
            run.outcome, run.detail = TIMEOUT, f"not done after {limit_s:g} s"
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError, psutil.Error) as error:
            run.outcome, run.detail = ERROR, rpc_error_text(error)
        finally:
            await cancel(reader)


def run_worker_latency(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server and one worker, `args.worker_latency_samples` single tasks each way."""
    run = LatencyRun(args.worker_latency_samples, args.worker_slots)
    name = "workers-latency"
    try:
        with started_server(Backend(SQLITE), name, workdir, args) as server:
            directory = workdir / f"{SQLITE}-{name}"
            with started_workers(server.address, 1, run.slots, directory) as workers:
                asyncio.run(measure_latency(server.address, run, workers, args.timeout))
            if run.outcome != OK:
                run.detail += f"\nserver log tail:\n{server.log_tail()}"
    except RuntimeError as error:
        run.outcome, run.detail = ERROR, f"{run.detail}\n{error}".strip()
    return {
        "backend": SQLITE,
        "samples": run.samples,
        "workers": 1,
        "slots": run.slots,
        "outcome": run.outcome,
        "detail": run.detail,
        "dispatch": summary_ms(run.dispatch_s),
        "claim_to_start": summary_ms(run.claim_to_start_s),
        "round_trip": summary_ms(run.round_trip_s),
        "execute_rpc": summary_ms(run.execute_rpc_s),
        "builtin_round_trip": summary_ms(run.builtin_round_trip_s),
    }


def format_worker_latency(result: dict[str, Any]) -> str:
    head = (
        f"{result['backend']:<10} worker latency (1 worker x {result['slots']} slots, "
        f"{result['samples']} single tasks, idle server):"
    )
    if result["outcome"] != OK:
        return f"{head} {result['outcome']} ({result['detail']})"

    def pair(name: str) -> str:
        ms = result[name]
        return f"p50 {ms['p50_ms']:.2f}, p99 {ms['p99_ms']:.2f} ms (max {ms['max_ms']:.2f})"

    return (
        f"{head} ExecuteTask sent -> worker function started {pair('dispatch')} "
        f"(ExecuteTask reply {pair('execute_rpc')}; claim recorded -> started "
        f"{pair('claim_to_start')}); "
        f"-> completed event received {pair('round_trip')}; "
        f"built-in sleep_executor 0 s round trip {pair('builtin_round_trip')}"
    )
