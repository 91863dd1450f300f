"""taskgrove benchmark: tree throughput and CreateTaskTree latency against a real server.

Every scenario starts its own `taskgrove serve` subprocess on 127.0.0.1 with a fresh SQLite
file, so numbers are comparable. See bench/README.md for the method.

    .venv/bin/python bench/run.py [--quick | --sizes 100,1000,10000] [--shapes flat,chain]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psutil
from serverproc import MB, RssSampler, ServerProcess
from taskgrove import AsyncClient, TaskgroveError, statuses
from taskgrove.client import task_message
from taskgrove.v1 import task_service_pb2
from trees import ROOT_ID, SHAPES, TaskDict, flat, leaf_count

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
DEFAULT_SIZES = (100, 1_000, 10_000)
QUICK_SIZES = (100, 1_000)
POLL_INTERVAL_S = 0.005
LATENCY_TASKS = 1_000

OK, TIMEOUT, ERROR, FAILED = "OK", "TIMEOUT", "ERROR", "FAILED"


@dataclass(slots=True)
class Row:
    """One throughput scenario. `tasks` counts executable (leaf) tasks; tasks/s uses it."""

    shape: str
    tasks: int
    total_tasks: int
    """Including groups (the root and, for `balanced`, the inner groups)."""
    outcome: str
    seconds: float | None = None
    """Send of CreateTaskTree(execute=True) -> first GetTask reply with the root finished."""
    tasks_per_s: float | None = None
    create_seconds: float | None = None
    """Round trip of the CreateTaskTree(execute=True) call alone."""
    root_status: str = ""
    polls: int = 0
    poll_ms_mean: float | None = None
    peak_rss_mb: float = 0.0
    vm_hwm_mb: float = 0.0
    server_cpu_seconds: float = 0.0
    detail: str = ""


@dataclass(slots=True)
class Measured:
    outcome: str
    poll_interval_s: float = POLL_INTERVAL_S
    seconds: float | None = None
    create_seconds: float | None = None
    root_status: str = ""
    polls: int = 0
    poll_seconds: float = 0.0
    detail: str = ""


# ---------------------------------------------------------------------------- requests


def tree_request(tasks: Sequence[TaskDict], *, execute: bool) -> Any:
    """The CreateTaskTree request, built before any timer starts."""
    return task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_message(**task) for task in tasks], execute=execute
    )


# ---------------------------------------------------------------------------- measuring


async def _poll_until_finished(client: AsyncClient, root_id: str, measured: Measured) -> None:
    """GetTask on the root every `poll_interval_s` until it is terminal (caller bounds it)."""
    while True:
        sent = time.perf_counter()
        task = await client.get_task(root_id)
        measured.poll_seconds += time.perf_counter() - sent
        measured.polls += 1
        if task.is_finished:
            measured.root_status = task.status
            return
        await asyncio.sleep(measured.poll_interval_s)


async def _describe_root(client: AsyncClient, root_id: str) -> str:
    """After a timeout: where the root got to (best effort)."""
    if not root_id:
        return "CreateTaskTree did not return"
    try:
        async with asyncio.timeout(30):
            task = await client.get_task(root_id)
    except (TimeoutError, TaskgroveError) as error:
        return f"root unreadable: {error}"
    return f"root {task.status}, progress {task.progress:.3f}"


async def measure_tree(
    address: str, request: Any, limit_s: float, poll_interval_s: float
) -> Measured:
    """Time one CreateTaskTree(execute=True) until the root is reported finished."""
    measured = Measured(outcome=OK, poll_interval_s=poll_interval_s)
    root_id = ""
    async with AsyncClient(address, timeout=limit_s) as client:
        try:
            async with asyncio.timeout(limit_s):
                start = time.perf_counter()
                reply = await client.stub.CreateTaskTree(request)
                measured.create_seconds = time.perf_counter() - start
                root_id = reply.task_ids[ROOT_ID]
                await _poll_until_finished(client, root_id, measured)
                measured.seconds = time.perf_counter() - start
        except TimeoutError:
            measured.outcome = TIMEOUT
            measured.detail = f"not finished after {limit_s:g} s; " + await _describe_root(
                client, root_id
            )
        except (grpc.aio.AioRpcError, TaskgroveError) as error:
            measured.outcome = ERROR
            measured.detail = _rpc_error_text(error)
    if measured.outcome == OK and measured.root_status != statuses.COMPLETED:
        measured.outcome = FAILED
        measured.detail = f"root ended {measured.root_status}"
    return measured


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


def _rpc_error_text(error: Exception) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)


# ---------------------------------------------------------------------------- scenarios


def _profile_path(profile_dir: Path | None, name: str) -> Path | None:
    if profile_dir is None:
        return None
    profile_dir.mkdir(parents=True, exist_ok=True)
    return profile_dir / f"{name}.txt"


def run_scenario(shape: str, size: int, workdir: Path, args: argparse.Namespace) -> Row:
    """One fresh server, one tree of `size` leaves, timed to completion."""
    tasks = SHAPES[shape](size)
    request = tree_request(tasks, execute=True)
    name = f"{shape}-{size}"
    server = ServerProcess(
        workdir / name,
        profile_path=_profile_path(args.profile, name),
        profile_rate=args.profile_rate,
    )
    row = Row(shape=shape, tasks=leaf_count(tasks), total_tasks=len(tasks), outcome=ERROR)
    try:
        with server, RssSampler(server.pid) as rss:
            measured = asyncio.run(
                measure_tree(server.address, request, args.timeout, args.poll_interval)
            )
    except RuntimeError as error:  # the server did not start
        row.detail = str(error)
        return row
    row.outcome = measured.outcome
    row.seconds = measured.seconds
    row.create_seconds = measured.create_seconds
    row.tasks_per_s = row.tasks / measured.seconds if measured.seconds else None
    row.root_status = measured.root_status
    row.polls = measured.polls
    row.poll_ms_mean = 1000 * measured.poll_seconds / measured.polls if measured.polls else None
    row.peak_rss_mb = rss.peak_rss / MB
    row.vm_hwm_mb = rss.hwm / MB
    row.server_cpu_seconds = rss.cpu_seconds
    row.detail = measured.detail
    if measured.outcome != OK:
        row.detail += f"\nserver log tail:\n{server.log_tail()}"
    return row


def run_create_latency(size: int, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """CreateTaskTree(execute=False) of a flat tree: one warm-up call, then
    `args.latency_repeats` timed ones."""
    timeout: float = args.timeout
    request = tree_request(flat(size), execute=False)
    name = f"create-{size}"
    server = ServerProcess(
        workdir / name,
        profile_path=_profile_path(args.profile, name),
        profile_rate=args.profile_rate,
    )
    result: dict[str, Any] = {"shape": "flat", "tasks": size, "total_tasks": size + 1}
    try:
        with server, RssSampler(server.pid) as rss:
            samples = asyncio.run(
                measure_creates(server.address, request, args.latency_repeats + 1, limit_s=timeout)
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


def format_table(rows: Sequence[Row]) -> str:
    header = f"{'shape':<9} {'tasks':>7} {'seconds':>9} {'tasks/s':>9} {'peak RSS MB':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        seconds = _num(row.seconds, 3) if row.outcome == OK else row.outcome
        lines.append(
            f"{row.shape:<9} {row.tasks:>7,} {seconds:>9} {_num(row.tasks_per_s, 1):>9} "
            f"{_num(row.peak_rss_mb, 1):>12}"
        )
    return "\n".join(lines)


def format_latency(latency: dict[str, Any]) -> str:
    head = f"CreateTaskTree latency ({latency['tasks']:,} tasks, execute=False):"
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


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a .tmp file next to it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _shape_list(text: str) -> list[str]:
    shapes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown shapes {unknown}; known: {list(SHAPES)}")
    return shapes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--sizes", type=_int_list, default=list(DEFAULT_SIZES))
    sizes.add_argument("--quick", action="store_true", help="sizes 100 and 1,000 only")
    parser.add_argument("--shapes", type=_shape_list, default=list(SHAPES))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="per-scenario limit in seconds"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL_S,
        help="seconds between GetTask polls of the root",
    )
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--no-latency", action="store_true", help="skip the latency line")
    parser.add_argument(
        "--profile", type=Path, help="record each server with py-spy into this directory"
    )
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--keep", action="store_true", help="keep databases and server logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = list(QUICK_SIZES)
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], dict[str, Any] | None]:
    rows = []
    for shape in args.shapes:
        for size in args.sizes:
            _log(f"[bench] {shape} {size:,} ...")
            row = run_scenario(shape, size, workdir, args)
            rows.append(row)
            _log(f"[bench]   {row.outcome} {_num(row.seconds, 3)} s {row.detail}".rstrip())
    latency = None
    if not args.no_latency:
        _log(f"[bench] CreateTaskTree latency {LATENCY_TASKS:,} ...")
        latency = run_create_latency(LATENCY_TASKS, workdir, args)
    return rows, latency


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="taskgrove-bench-"))
    try:
        rows, latency = run_all(args, workdir)
    finally:
        if args.keep:
            _log(f"[bench] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_table(rows))
    if latency is not None:
        print(format_latency(latency))
    write_json(
        args.json,
        {
            "started_at": started.isoformat(timespec="seconds"),
            "machine": {**machine(), "loadavg_1m_at_start": load_at_start},
            "settings": {
                "poll_interval_s": args.poll_interval,
                "poll_method": "GetTask on the root",
                "timeout_s": args.timeout,
                "leaf": "sleep_executor {'seconds': 0}",
                "profiled": args.profile is not None,
            },
            "scenarios": [asdict(row) for row in rows],
            "create_tree_latency": latency,
        },
    )
    print(f"results: {args.json}")
    failed = [row for row in rows if row.outcome != OK]
    return 1 if failed or (latency is not None and latency["outcome"] != OK) else 0


if __name__ == "__main__":
    sys.exit(main())
