"""taskgrove benchmark: tree throughput (polled and watched), event latency, watcher fan-out
and CreateTaskTree latency against a real server, on SQLite and (when reachable) PostgreSQL.

The runner: the command line, the backends, running the chosen scenarios (`scenarios/`),
the printed tables and the JSON results file (its machine and revision: `report.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import OK, POLL_INTERVAL_S, POSTGRES, SQLITE, Backend, log, num, scratch_dir
from pgdb import PgServer
from report import RESULTS_DIR, Session, write_json
from scenarios.create_latency import (
    CREATE_LATENCY_TASKS,
    format_create_latency,
    run_create_latency,
)
from scenarios.event_latency import EVENT_LATENCY_SAMPLES, format_event_latency, run_event_latency
from scenarios.fanout import FANOUT_SUBSCRIBERS, FANOUT_TASKS, FanoutRun, format_fanout, run_fanout
from scenarios.floor import FLOOR_CALLS, format_floor, run_floor
from scenarios.replicas import (
    REPLICA_CHAIN_TASKS,
    REPLICA_FLAT_TASKS,
    REPLICA_REPEATS,
    ReplicaRun,
    commit_rate,
    format_commit_rate,
    format_replicas,
    format_top_statements,
    run_replicas,
)
from scenarios.replicas import as_json as replicas_json
from scenarios.replicas import summarize as summarize_replicas
from scenarios.system_info import format_system_info, run_system_info
from scenarios.throughput import (
    CHAIN_MAX,
    POLL,
    WATCH,
    Run,
    format_running,
    format_table,
    run_throughput,
)
from scenarios.tutorial import (
    QUICK_TUTORIAL_SIZES,
    TUTORIAL_SHAPES,
    TUTORIAL_SIZES,
    TutorialRun,
    as_json,
    format_tutorial,
    run_tutorial,
)
from scenarios.workers import (
    WORKER_COUNTS,
    WORKER_LATENCY_SAMPLES,
    WORKER_REPEATS,
    WORKER_SLOTS,
    WORKER_TASKS,
    WorkerRun,
    format_worker_latency,
    format_worker_throughput,
    run_worker_latency,
    run_worker_throughput,
    summarize,
)
from trees import SHAPES

DEFAULT_JSON = RESULTS_DIR / "latest.json"
WORKERS_JSON = RESULTS_DIR / "workers.json"
"""The results file of `--workers-only` (the full run's file stays whole)."""
REPLICAS_JSON = RESULTS_DIR / "replicas.json"
"""The results file of `--replicas-only`."""
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000,)
DEFAULT_PG_URL = "postgresql+asyncpg://taskgrove:taskgrove@127.0.0.1/taskgrove_bench"

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
    parser.add_argument(
        "--json",
        type=Path,
        help="results file (default latest.json; workers.json with --workers-only)",
    )
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
        "--tutorial-sizes",
        type=_int_list,
        help="tutorial path (create_task one by one) sizes (default 100,1000,10000)",
    )
    parser.add_argument("--no-tutorial", action="store_true", help="skip the tutorial path")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor under a create")
    parser.add_argument("--floor-calls", type=int, default=FLOOR_CALLS)
    parser.add_argument(
        "--no-system-info", action="store_true", help="skip the system_info cpu line"
    )
    workers = parser.add_mutually_exclusive_group()
    workers.add_argument("--no-workers", action="store_true", help="skip the worker scenario")
    workers.add_argument(
        "--workers-only", action="store_true", help="only the worker scenario (SQLite)"
    )
    parser.add_argument("--worker-tasks", type=int, default=WORKER_TASKS)
    parser.add_argument("--worker-counts", type=_int_list, default=list(WORKER_COUNTS))
    parser.add_argument("--worker-slots", type=int, default=WORKER_SLOTS, help="per worker")
    parser.add_argument(
        "--worker-repeats", type=int, default=WORKER_REPEATS, help="rounds (median kept)"
    )
    parser.add_argument("--worker-latency-samples", type=int, default=WORKER_LATENCY_SAMPLES)
    replicas = parser.add_mutually_exclusive_group()
    replicas.add_argument(
        "--no-replicas", action="store_true", help="skip the replicas scenario (PostgreSQL)"
    )
    replicas.add_argument(
        "--replicas-only", action="store_true", help="only the replicas scenario (PostgreSQL)"
    )
    parser.add_argument("--replica-flat-tasks", type=int, default=REPLICA_FLAT_TASKS)
    parser.add_argument("--replica-chain-tasks", type=int, default=REPLICA_CHAIN_TASKS)
    parser.add_argument(
        "--replica-repeats", type=int, default=REPLICA_REPEATS, help="rounds (median kept)"
    )
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
        args.tutorial_sizes = args.tutorial_sizes or list(QUICK_TUTORIAL_SIZES)
        args.floor_calls = min(args.floor_calls, 300)
        args.worker_tasks = min(args.worker_tasks, 1_000)
        args.worker_repeats = 1
        args.worker_latency_samples = min(args.worker_latency_samples, 100)
        args.replica_flat_tasks = min(args.replica_flat_tasks, 1_000)
        args.replica_chain_tasks = min(args.replica_chain_tasks, 300)
        args.replica_repeats = 1
    elif args.sizes is None:
        args.sizes = list(DEFAULT_SIZES)
    if args.workers_only:
        args.no_pg = True
        for skip in ("throughput", "tutorial", "floor", "system_info", "event_latency", "fanout"):
            setattr(args, f"no_{skip}", True)
        args.no_latency = True
        args.no_replicas = True
    if args.replicas_only:
        if args.no_pg:
            parser.error("--replicas-only needs PostgreSQL (not --no-pg)")
        args.pg_only = True
        for skip in ("throughput", "tutorial", "floor", "system_info", "event_latency", "fanout"):
            setattr(args, f"no_{skip}", True)
        args.no_latency = True
        args.no_workers = True
    if args.json is None:
        args.json = (
            WORKERS_JSON
            if args.workers_only
            else REPLICAS_JSON
            if args.replicas_only
            else DEFAULT_JSON
        )
    if args.tutorial_sizes is None:
        args.tutorial_sizes = list(TUTORIAL_SIZES)
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


# ---------------------------------------------------------------------------- running


@dataclass(slots=True)
class Results:
    runs: list[Run] = field(default_factory=list)
    event_latency: list[dict[str, Any]] = field(default_factory=list)
    fanout: list[FanoutRun] = field(default_factory=list)
    create_latency: list[dict[str, Any]] = field(default_factory=list)
    floor: list[dict[str, Any]] = field(default_factory=list)
    tutorial: list[TutorialRun] = field(default_factory=list)
    system_info: list[dict[str, Any]] = field(default_factory=list)
    workers: list[WorkerRun] = field(default_factory=list)
    worker_latency: list[dict[str, Any]] = field(default_factory=list)
    replicas: list[ReplicaRun] = field(default_factory=list)
    commit_rate: list[dict[str, Any]] = field(default_factory=list)

    def failed(self) -> bool:
        return (
            any(run.outcome != OK for run in self.runs)
            or any(item["outcome"] != OK for item in self.system_info)
            or any(run.outcome != OK for run in self.tutorial)
            or any(item["outcome"] != OK for item in self.event_latency)
            or any(run.outcome != OK for run in self.fanout)
            or any(item["outcome"] != OK for item in self.create_latency)
            or any(item["outcome"] != OK for item in self.floor)
            or any(run.outcome != OK for run in self.workers)
            or any(item["outcome"] != OK for item in self.worker_latency)
            or any(run.outcome != OK for run in self.replicas)
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
                        log(f"[bench] {backend.name} {shape} {size:,} {mode} ...")
                        run = run_throughput(backend, shape, size, mode, workdir, args)
                        results.runs.append(run)
                        log(
                            f"[bench]   {run.outcome} {num(run.seconds, 3)} s "
                            f"(create {num(run.create_seconds, 3)} s) {run.detail}".rstrip()
                        )
        if not args.no_floor and backend.name == SQLITE:
            log(f"[bench] sqlite the floor under a create, {args.floor_calls:,} calls a layer ...")
            results.floor.append(run_floor(backend, workdir, args))
            log(f"[bench]   {results.floor[-1]['outcome']}")
        if not args.no_tutorial:
            for shape in TUTORIAL_SHAPES:
                for size in args.tutorial_sizes:
                    log(f"[bench] {backend.name} tutorial {shape} {size:,} ...")
                    tutorial = run_tutorial(backend, shape, size, workdir, args)
                    results.tutorial.append(tutorial)
                    log(f"[bench]   {tutorial.outcome} {num(tutorial.seconds, 3)} s")
        if not args.no_system_info:
            log(f"[bench] {backend.name} system_info cpu x 100 ...")
            results.system_info.append(run_system_info(backend, workdir, args))
            log(f"[bench]   {format_system_info(results.system_info[-1])}")
        if not args.no_event_latency:
            log(f"[bench] {backend.name} event latency x {args.event_samples} ...")
            latency = run_event_latency(backend, workdir, args)
            results.event_latency.append(latency)
            log(f"[bench]   {format_event_latency(latency)}")
        if not args.no_fanout and (backend.pg is None or not args.no_pg_fanout):
            results.fanout.extend(run_fanout(backend, workdir, args))
        if not args.no_latency:
            log(f"[bench] {backend.name} CreateTaskTree latency {CREATE_LATENCY_TASKS:,} ...")
            results.create_latency.append(
                run_create_latency(backend, CREATE_LATENCY_TASKS, workdir, args)
            )
        if not args.no_workers and backend.name == SQLITE:
            results.workers.extend(run_worker_throughput(workdir, args, log))
            log(f"[bench] sqlite worker latency x {args.worker_latency_samples} ...")
            results.worker_latency.append(run_worker_latency(workdir, args))
            log(f"[bench]   {format_worker_latency(results.worker_latency[-1])}")
        if not args.no_replicas and backend.pg is not None:
            log("[bench] postgresql commit rate ...")
            results.commit_rate = commit_rate(backend.pg)
            log(f"[bench]   {format_commit_rate(results.commit_rate)}")
            results.replicas.extend(run_replicas(backend.pg, workdir, args, log))
    return results


# ---------------------------------------------------------------------------- results


def print_results(results: Results) -> None:
    if results.runs:
        print(format_table(results.runs))
        print(format_running(results.runs))
    for item in results.floor:
        print(format_floor(item))
    if results.tutorial:
        print(format_tutorial(results.tutorial))
    for latency in results.event_latency:
        print(format_event_latency(latency))
    if results.fanout:
        print(format_fanout(results.fanout))
    for latency in results.create_latency:
        print(format_create_latency(latency))
    for item in results.system_info:
        print(format_system_info(item))
    if results.workers:
        print(format_worker_throughput(summarize(results.workers)))
    for item in results.worker_latency:
        print(format_worker_latency(item))
    if results.replicas:
        print(format_replicas(summarize_replicas(results.replicas)))
        if top := format_top_statements(summarize_replicas(results.replicas)):
            print(top)
    if results.commit_rate:
        print(format_commit_rate(results.commit_rate))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    session = Session()
    chosen, pg_note = backends(args)
    log(f"[bench] {pg_note}")
    if not args.no_replicas and all(backend.pg is None for backend in chosen):
        log("[bench] replicas scenario skipped: it needs PostgreSQL (see the line above)")
        if args.replicas_only:  # nothing to run: keep the last results file as it is
            return 0
    with scratch_dir("taskgrove-bench-", args.keep) as workdir:
        results = run_all(args, chosen, workdir)
    session.finish()
    print_results(results)
    print(f"{pg_note}. {session.note()}")
    write_json(
        args.json,
        {
            **session.header(),
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
            "floor": results.floor,
            "tutorial": [as_json(run) for run in results.tutorial],
            "system_info_cpu": results.system_info,
            "workers": {
                "settings": {
                    "tasks": args.worker_tasks,
                    "workers": args.worker_counts,
                    "slots_per_worker": args.worker_slots,
                    "repeats": args.worker_repeats,
                    "timed_from": "send of CreateTaskTree(execute=False) (total) and of "
                    "ExecuteTask (run) to the GetTask poll reply (20 ms apart) showing "
                    "the root terminal",
                    "cpu": "psutil cpu_times user+system of the server and of every "
                    "worker process, just before CreateTaskTree and after the root was seen",
                },
                "summary": summarize(results.workers),
                "runs": [asdict(run) for run in results.workers],
                "latency": results.worker_latency,
            },
            "replicas": replicas_json(results.replicas, results.commit_rate),
        },
    )
    print(f"results: {args.json}")
    return 1 if results.failed() else 0
