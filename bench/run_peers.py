"""taskgrove next to its peers (`make bench-peers`): Prefect 3 and Celery 5, each in its own
venv under build/peers/, run the same shapes (flat and chain of trivial tasks, 100 and 1,000)
as taskgrove's tutorial path and bulk path, interleaved, every run on a fresh server, broker
or worker. Prints medians and ratios; writes bench/results/peers.json.

What is timed for each system: bench/README.md, section Peers.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from harness import ERROR, FAILED, OK, SQLITE, TIMEOUT, Backend, log, num
from peer_runs import PeerRun, celery_system, run_celery, run_prefect
from peer_venvs import ensure_venv, installed_versions
from runner import BENCH_DIR, machine, revision, write_json
from scenarios.bulk import run_bulk
from scenarios.tutorial import run_tutorial

TUTORIAL, BULK, PREFECT = "taskgrove-tutorial", "taskgrove-bulk", "prefect"
CELERY_POLLING_S: dict[str, float | None] = {celery_system(None): None, "celery-10ms": 0.01}
SYSTEMS = (TUTORIAL, BULK, PREFECT, *CELERY_POLLING_S)
SKIPPED = "SKIPPED"
"""A repeat left out because an earlier repeat of the same system and size timed out."""
ROWS = (
    ("taskgrove tutorial", TUTORIAL, "seconds"),
    ("taskgrove bulk", BULK, "seconds"),
    ("prefect flow return", PREFECT, "seconds"),
    ("prefect persisted", PREFECT, "persisted_seconds"),
    ("celery 1 s polling", "celery-1s", "seconds"),
    ("celery 10 ms polling", "celery-10ms", "seconds"),
)
DEFAULT_JSON = BENCH_DIR / "results" / "peers.json"
Runner = Callable[[PeerRun, Path], PeerRun]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    def listed(cast: Callable[[str], Any]) -> Callable[[str], list[Any]]:
        return lambda text: [cast(part.strip()) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=listed(str), default=["flat", "chain"])
    parser.add_argument("--sizes", type=listed(int), default=[100, 1_000])
    parser.add_argument("--repeats", type=int, default=3, help="runs per system and size")
    parser.add_argument("--systems", type=listed(str), default=list(SYSTEMS))
    parser.add_argument("--timeout", type=float, default=300.0, help="per-run limit, seconds")
    parser.add_argument(
        "--celery-pool", choices=["solo", "prefork"], default="solo", help="prefork: 2 processes"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument("--keep", action="store_true", help="keep databases and logs")
    # What harness.started_server expects of the main bench's options.
    parser.set_defaults(profile=None, profile_rate=100)
    args = parser.parse_args(argv)
    for name, chosen, known in (
        ("shape", args.shapes, ("flat", "chain")),
        ("system", args.systems, SYSTEMS),
    ):
        if unknown := [item for item in chosen if item not in known]:
            parser.error(f"unknown {name} {unknown}; known: {list(known)}")
    return args


# ---------------------------------------------------------------------------- running


def taskgrove_runner(system: str, args: argparse.Namespace) -> Runner:
    backend = Backend(SQLITE)

    def run(target: PeerRun, workdir: Path) -> PeerRun:
        if system == TUTORIAL:
            tutorial = run_tutorial(backend, target.shape, target.tasks, workdir, args)
            target.timings = {
                "create_seconds": tutorial.create_seconds,
                "execute_seconds": tutorial.execute_seconds,
            }
            done: Any = tutorial
        else:
            done = bulk = run_bulk(backend, target.shape, target.tasks, workdir, args)
            target.timings = {"create_seconds": bulk.create_seconds, "events": bulk.events}
        target.outcome, target.seconds, target.detail = done.outcome, done.seconds, done.detail
        target.service_peak_rss_mb = done.peak_rss_mb
        target.timings["server_cpu_seconds"] = done.server_cpu_seconds
        return target

    return run


def runners(args: argparse.Namespace) -> tuple[dict[str, Runner], dict[str, dict[str, str]]]:
    """A runner per chosen system, and the peers' installed versions (venvs set up)."""
    chosen: dict[str, Runner] = {}
    versions: dict[str, dict[str, str]] = {}
    bins: dict[str, Path] = {}
    for system in args.systems:
        peer = system.split("-")[0]
        if peer != "taskgrove" and peer not in bins:
            bins[peer] = ensure_venv(peer)
            versions[peer] = installed_versions(bins[peer], peer)
        if peer == "taskgrove":
            chosen[system] = taskgrove_runner(system, args)
        elif peer == PREFECT:
            chosen[system] = functools.partial(run_prefect, bins[peer], args.timeout)
        else:
            chosen[system] = functools.partial(
                run_celery,
                bins[peer],
                args.timeout,
                polling_s=CELERY_POLLING_S[system],
                pool=args.celery_pool,
            )
    return chosen, versions


def run_all(args: argparse.Namespace, chosen: dict[str, Runner], workdir: Path) -> list[PeerRun]:
    """For each shape and size, `repeats` rounds of every system in turn (so slow drifts of
    the machine's load touch all of them alike)."""
    runs: list[PeerRun] = []
    timed_out: set[tuple[str, str, int]] = set()
    for shape in args.shapes:
        for size in args.sizes:
            for repeat in range(args.repeats):
                for system, runner in chosen.items():
                    run = PeerRun(system, shape, size, repeat)
                    if (system, shape, size) in timed_out:
                        run.outcome = SKIPPED
                    else:
                        log(f"[peers] {shape} {size:,} #{repeat + 1} {system} ...")
                        runner(run, workdir)
                        extra = f" (persisted {num(run.persisted_seconds, 3)} s)"
                        log(
                            f"[peers]   {run.outcome} {num(run.seconds, 3)} s"
                            + (extra if system == PREFECT else "")
                            + (f" {run.detail.splitlines()[0]}" if run.detail else "")
                        )
                        if run.outcome == TIMEOUT:
                            timed_out.add((system, shape, size))
                    runs.append(run)
    return runs


# ---------------------------------------------------------------------------- results


def medians(runs: Sequence[PeerRun]) -> list[dict[str, Any]]:
    """One entry per shape, size and table row: the median of the runs that finished."""
    out: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((run.shape, run.tasks) for run in runs))
    for shape, tasks in keys:
        base: dict[str, float | None] = {}
        rows: list[dict[str, Any]] = []
        for label, system, attribute in ROWS:
            mine = [r for r in runs if (r.shape, r.tasks, r.system) == (shape, tasks, system)]
            if not mine:
                continue
            values = [getattr(r, attribute) for r in mine if r.outcome == OK]
            values = [value for value in values if value is not None]
            median = statistics.median(values) if values else None
            if system in (TUTORIAL, BULK):
                base[system] = median
            outcomes = [r.outcome for r in mine if r.outcome not in (OK, SKIPPED)]
            rss = [r.service_peak_rss_mb for r in mine if r.service_peak_rss_mb]
            rows.append(
                {
                    "shape": shape,
                    "tasks": tasks,
                    "row": label,
                    "system": system,
                    "ok": len(values),
                    "runs": len(mine),
                    "median_seconds": median,
                    "tasks_per_s": tasks / median if median else None,
                    "not_ok": outcomes[0] if outcomes else ("-" if not values else ""),
                    "service_peak_rss_mb": max(rss) if rss else None,
                }
            )
        for row in rows:
            for system, key in ((TUTORIAL, "vs_tutorial"), (BULK, "vs_bulk")):
                reference, median = base.get(system), row["median_seconds"]
                row[key] = median / reference if median and reference else None
        out.extend(rows)
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'shape':<6} {'tasks':>6}  {'system':<21} {'ok':>4} {'median s':>9} {'tasks/s':>8} "
        f"{'/ tutorial':>10} {'/ bulk':>8} {'RSS MB':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        seconds = num(row["median_seconds"], 3) if row["median_seconds"] else row["not_ok"]
        lines.append(
            f"{row['shape']:<6} {row['tasks']:>6,}  {row['row']:<21} "
            f"{row['ok']}/{row['runs']:<2} {seconds:>9} {num(row['tasks_per_s'], 0):>8} "
            f"{num(row['vs_tutorial'], 2):>10} {num(row['vs_bulk'], 1):>8} "
            f"{num(row['service_peak_rss_mb'], 0):>7}"
        )
    return "\n".join(lines)


def _terminate(signum: int, _frame: object) -> NoReturn:
    # SystemExit unwinds through every `with`, so the servers and workers get stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    chosen, versions = runners(args)
    workdir = Path(tempfile.mkdtemp(prefix="taskgrove-peers-"))
    clock = time.monotonic()
    try:
        runs = run_all(args, chosen, workdir)
    finally:
        if args.keep:
            log(f"[peers] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - clock
    rev, table = revision(), medians(runs)
    pinned = ", ".join(f"{name} {v}" for peer in versions.values() for name, v in peer.items())
    print(format_table(table))
    print(
        f"Code: {rev['label']}. Peers: {pinned or 'none'}; celery pool {args.celery_pool}. "
        f"{os.cpu_count()} CPUs, load {load_at_start:.1f} -> {os.getloadavg()[0]:.1f}, "
        f"{elapsed / 60:.1f} min."
    )
    write_json(
        args.json,
        {
            "started_at": started.isoformat(timespec="seconds"),
            "elapsed_seconds": elapsed,
            "revision": rev,
            "machine": {**machine(), "loadavg_1m_at_start": load_at_start},
            "versions": versions,
            "settings": {
                "repeats": args.repeats,
                "timeout_s": args.timeout,
                "celery_pool": args.celery_pool,
                "order": "per shape and size: repeats x systems in turn",
                "timed": "see bench/README.md, section Peers",
            },
            "medians": table,
            "runs": [asdict(run) for run in runs],
        },
    )
    print(f"results: {args.json}")
    return 1 if any(run.outcome in (ERROR, FAILED) for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
