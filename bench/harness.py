"""What every scenario shares: the backend, a fresh server on a fresh database, the outcome
words, the CreateTaskTree request, and small helpers (errors, logging, percentiles)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from pgdb import PgServer
from sampler import MB, RssSampler
from taskgrove import task_message
from taskgrove.v1 import task_service_pb2
from taskgrove_server.testing import ServerProcess, sqlite_url
from trees import TaskDict

SQLITE, POSTGRES = "sqlite", "postgresql"
OK, TIMEOUT, ERROR, FAILED = "OK", "TIMEOUT", "ERROR", "FAILED"
POLL_INTERVAL_S = 0.02
"""Pause between GetTask polls of a root."""
GC_STATS_ENV = "TASKGROVE_GC_STATS"
"""Makes the server print its garbage-collection totals when it stops."""
_GC_STATS_LINE = re.compile(r"taskgrove gc stats: (.*)")


@dataclass(slots=True)
class Backend:
    name: str
    pg: PgServer | None = None


def tree_request(tasks: Sequence[TaskDict], *, execute: bool) -> Any:
    """The CreateTaskTree request, built before any timer starts."""
    # The harness needs only the ids back: the BASIC view spares the server (and this
    # client) an echo of every task, which at 100,000 tasks costs hundreds of MB.
    return task_service_pb2.CreateTaskTreeRequest(
        tasks=[task_message(**task) for task in tasks],
        execute=execute,
        view=task_service_pb2.TASK_VIEW_BASIC,
    )


# ---------------------------------------------------------------------------- the server


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
            extra_env={GC_STATS_ENV: "1"},
            log_path=directory / "server.log",
            wrapper=profiler(args.profile, args.profile_rate, f"{backend.name}-{name}"),
        )
        stack.enter_context(server)
        yield server


class ServerRun(Protocol):
    """What `on_fresh_server` fills in on a scenario's result."""

    outcome: str
    detail: str
    peak_rss_mb: float
    server_cpu_seconds: float


def on_fresh_server(
    backend: Backend,
    name: str,
    workdir: Path,
    args: argparse.Namespace,
    run: ServerRun,
    measure: Callable[[str], Coroutine[Any, Any, None]],
) -> None:
    """`measure(address)` against a fresh server, its RSS and CPU sampled meanwhile; sets
    `run`'s outcome to ERROR when the server does not start, and adds the server log's
    tail to the detail of a run that did not end OK."""
    try:
        with (
            started_server(backend, name, workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            asyncio.run(measure(server.address))
            if run.outcome != OK:
                run.detail += f"\nserver log tail:\n{server.log_tail()}"
    except RuntimeError as error:  # the server (or its database) did not start
        run.outcome, run.detail = ERROR, str(error)
        return
    run.peak_rss_mb = rss.peak_rss / MB
    run.server_cpu_seconds = rss.cpu_seconds


def gc_stats(server: ServerProcess) -> dict[str, float] | None:
    """The garbage-collection totals a stopped server printed (`taskgrove gc stats:
    gen2_collections=N gen2_seconds=S ...`), or None (a server without the hook)."""
    for line in reversed(server.log_tail(50).splitlines()):
        if match := _GC_STATS_LINE.search(line):
            pairs = (item.split("=", 1) for item in match.group(1).split())
            return {key: float(value) for key, value in pairs}
    return None


# ---------------------------------------------------------------------------- helpers


def rpc_error_text(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for a bench run's databases and logs: removed afterwards, or kept
    (and named on stderr) with `keep`."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float] | None:
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


def num(value: float | None, digits: int) -> str:
    """A number for the tables: thousands separators, `-` for none."""
    return "-" if value is None else f"{value:,.{digits}f}"
