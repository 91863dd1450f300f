"""taskgrove next to its peers (`make bench-peers`): Prefect 3 and Celery 5, each in its own
venv under build/peers/, run the same shapes (flat and chain of trivial tasks, 100 and 1,000)
as taskgrove's tutorial path and bulk path, interleaved, every run on a fresh server, broker
or worker. Prints medians and ratios; writes bench/results/peers.json.

What is timed for each system: bench/README.md, section Peers.

    .venv/bin/python bench/run_peers.py [--sizes 100,1000] [--repeats 3] [--systems ...]
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from harness import ERROR, FAILED, SQLITE, TIMEOUT, Backend, log, num, scratch_dir
from peer_runs import PeerRun, run_celery, run_prefect
from peer_table import (
    BULK,
    CELERY_1S,
    CELERY_10MS,
    PREFECT,
    SKIPPED,
    TUTORIAL,
    format_table,
    medians,
)
from peer_venvs import ensure_venv, installed_versions
from report import RESULTS_DIR, Session, write_json
from scenarios.bulk import BulkRun, run_bulk
from scenarios.tutorial import TutorialRun, run_tutorial

CELERY_POLLING_S: dict[str, float | None] = {CELERY_1S: None, CELERY_10MS: 0.01}
"""Broker and result polling: None keeps kombu's and Celery's defaults."""
SYSTEMS = (TUTORIAL, BULK, PREFECT, *CELERY_POLLING_S)
DEFAULT_JSON = RESULTS_DIR / "peers.json"
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


def _from_taskgrove(target: PeerRun, done: TutorialRun | BulkRun) -> PeerRun:
    target.outcome, target.seconds, target.detail = done.outcome, done.seconds, done.detail
    target.service_peak_rss_mb = done.peak_rss_mb
    target.timings["create_seconds"] = done.create_seconds
    target.timings["server_cpu_seconds"] = done.server_cpu_seconds
    return target


def taskgrove_runner(system: str, args: argparse.Namespace) -> Runner:
    backend = Backend(SQLITE)

    def run(target: PeerRun, workdir: Path) -> PeerRun:
        if system == TUTORIAL:
            tutorial = run_tutorial(backend, target.shape, target.tasks, workdir, args)
            target.timings["execute_seconds"] = tutorial.execute_seconds
            return _from_taskgrove(target, tutorial)
        bulk = run_bulk(backend, target.shape, target.tasks, workdir, args)
        target.timings["events"] = bulk.events
        return _from_taskgrove(target, bulk)

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
                    runs.append(run)
                    if (system, shape, size) in timed_out:
                        run.outcome = SKIPPED
                        continue
                    log(f"[peers] {shape} {size:,} #{repeat + 1} {system} ...")
                    runner(run, workdir)
                    persisted = f" (persisted {num(run.persisted_seconds, 3)} s)"
                    log(
                        f"[peers]   {run.outcome} {num(run.seconds, 3)} s"
                        + (persisted if system == PREFECT else "")
                        + (f" {run.detail.splitlines()[0]}" if run.detail else "")
                    )
                    if run.outcome == TIMEOUT:
                        timed_out.add((system, shape, size))
    return runs


# ---------------------------------------------------------------------------- main


def _terminate(signum: int, _frame: object) -> NoReturn:
    # SystemExit unwinds through every `with`, so the servers and workers get stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    session = Session()
    chosen, versions = runners(args)
    with scratch_dir("taskgrove-peers-", args.keep) as workdir:
        runs = run_all(args, chosen, workdir)
    session.finish()
    table = medians(runs)
    pinned = ", ".join(f"{name} {v}" for peer in versions.values() for name, v in peer.items())
    print(format_table(table))
    print(f"Peers: {pinned or 'none'}; celery pool {args.celery_pool}. {session.note()}")
    write_json(
        args.json,
        {
            **session.header(),
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
