"""One run of a peer, driven from taskgrove's venv: a fresh Prefect 3 API server or Celery 5
worker (own temp folder, SQLite files, 127.0.0.1 only), the peer's script
(`peers/<peer>_peer.py`) run in the peer's venv, its `PEER_RESULT {json}` line read, and
every process stopped by its PID. Every wait is bounded."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from harness import ERROR, OK, TIMEOUT
from peer_venvs import PEERS_DIR
from sampler import MB, RssSampler
from taskgrove_server.testing import LOOPBACK

RESULT_MARK = "PEER_RESULT "
START_TIMEOUT_S = 120.0
"""A fresh Prefect server migrates its database first: 10-20 s on this machine."""
STOP_TIMEOUT_S = 30.0
CLIENT_GRACE_S = 60.0
"""The peer script's imports and set-up, on top of the run's own limit."""
SERVICE_SAMPLE_S = 0.05
"""RSS sampling of a process tree lists the children each time: less often than 10 ms."""
CELERY_DEFAULT_RESULT_INTERVAL_S = 0.5
"""`AsyncResult.get(interval=...)`'s default: how often the client polls the result."""


@dataclass(slots=True)
class PeerRun:
    """One run of one system (taskgrove's paths too) on one shape and size."""

    system: str
    shape: str
    tasks: int
    repeat: int = 0
    outcome: str = ERROR
    seconds: float | None = None
    """The headline time (what is timed differs per system: bench/README.md, Peers)."""
    persisted_seconds: float | None = None
    """Prefect: flow call -> the API counts all N task runs terminal."""
    service_peak_rss_mb: float | None = None
    """Peak RSS of the service: taskgrove server, Prefect API server, Celery worker
    (process trees summed)."""
    client_peak_rss_mb: float | None = None
    start_seconds: float | None = None
    """The service's start-up until healthy/ready (not timed)."""
    timings: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


# ---------------------------------------------------------------------------- processes


def stop_tree(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process's PID, a bounded wait, then SIGKILL; then the same for any
    descendant it left behind (listed before the signal; psutil checks each PID still
    names the same process)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    alive = [child for child in descendants if child.is_running()]
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(alive, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


def peer_env(**extra: str) -> dict[str, str]:
    """This environment without taskgrove's and the peers' own settings (and without a
    PYTHONPATH meant for taskgrove), plus `extra`."""
    dropped = ("PREFECT_", "CELERY_", "TASKGROVE_")
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**base, **extra}


@contextlib.contextmanager
def service(
    argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running process in its own session, its output in `log_path`, stopped by
    `stop_tree` on exit whatever happens."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_tree(process)


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError), path.open(errors="replace") as file:
        return "".join(collections.deque(file, maxlen=lines))
    return ""


def wait_until(
    process: subprocess.Popen[Any], ready: Callable[[], bool], what: str, log_path: Path
) -> float:
    """Seconds until `ready()`; RuntimeError when the process exits or START_TIMEOUT_S
    passes first."""
    start = time.monotonic()
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}):\n{log_tail(log_path)}")
        if time.monotonic() - start > START_TIMEOUT_S:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:g} s")
        time.sleep(0.1)
    return time.monotonic() - start


def run_client(
    argv: list[str], env: Mapping[str, str], log_path: Path, limit_s: float
) -> dict[str, Any]:
    """Run a peer script (stderr to `log_path`) for at most `limit_s`; its result line as a
    dict, or {"outcome": TIMEOUT/ERROR, "detail": ...}."""
    with log_path.open("ab") as stderr:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            return {"outcome": TIMEOUT, "detail": f"not done after {limit_s:g} s"}
        finally:
            stop_tree(process)
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    detail = f"exit {process.returncode}, no result line:\n{log_tail(log_path)}"
    return {"outcome": ERROR, "detail": detail}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200 and reply.read().strip() == b"true")
    except (urllib.error.URLError, OSError):
        return False


def _apply(run: PeerRun, reply: dict[str, Any], sampled: RssSampler) -> None:
    run.outcome = reply.pop("outcome", ERROR)
    run.detail = reply.pop("detail", "")
    run.seconds = reply.pop("seconds", None)
    run.persisted_seconds = reply.pop("persisted_seconds", None)
    run.client_peak_rss_mb = reply.pop("client_peak_rss_mb", None)
    run.timings = reply
    run.service_peak_rss_mb = sampled.peak_rss / MB


# ---------------------------------------------------------------------------- the peers


def run_prefect(bin_dir: Path, limit_s: float, run: PeerRun, workdir: Path) -> PeerRun:
    """A fresh `prefect server start` (SQLite in a temp folder, no UI), then the flow in
    its own process with PREFECT_API_URL pointing at it."""
    directory = Path(tempfile.mkdtemp(prefix=f"prefect-{run.shape}-{run.tasks}-", dir=workdir))
    port = free_port()
    api = f"http://{LOOPBACK}:{port}/api"
    server_env = peer_env(
        PREFECT_HOME=str(directory / "server-home"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{directory / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    server_argv = [str(bin_dir / "prefect"), "server", "start", "--no-ui"]
    server_argv += ["--host", LOOPBACK, "--port", str(port)]
    server_log = directory / "server.log"
    flow = [str(bin_dir / "python"), str(PEERS_DIR / "prefect_peer.py")]
    flow += ["--shape", run.shape, "--tasks", str(run.tasks), "--timeout", str(limit_s)]
    flow_env = peer_env(PREFECT_HOME=str(directory / "client-home"), PREFECT_API_URL=api)
    try:
        with service(server_argv, server_env, server_log) as server:
            health = f"{api}/health"
            ready = wait_until(server, lambda: _healthy(health), "prefect server", server_log)
            run.start_seconds = ready
            with RssSampler(server.pid, SERVICE_SAMPLE_S, children=True) as rss:
                reply = run_client(flow, flow_env, directory / "flow.log", limit_s + CLIENT_GRACE_S)
            _apply(run, reply, rss)
    except RuntimeError as error:
        run.outcome, run.detail = ERROR, str(error)
    if run.outcome != OK:
        run.detail += f"\nserver log tail:\n{log_tail(server_log)}"
    return run


def celery_system(polling_s: float | None) -> str:
    return "celery-1s" if polling_s is None else f"celery-{polling_s * 1000:g}ms"


def run_celery(
    bin_dir: Path,
    limit_s: float,
    run: PeerRun,
    workdir: Path,
    *,
    polling_s: float | None,
    pool: str,
) -> PeerRun:
    """A fresh worker on a fresh SQLite broker and result backend, then the sender.
    `polling_s` None keeps kombu's default broker polling (1 s) and Celery's result polling
    (0.5 s); a value sets both."""
    directory = Path(tempfile.mkdtemp(prefix=f"celery-{run.shape}-{run.tasks}-", dir=workdir))
    extra = {"CELERY_PEER_DIR": str(directory)}
    if polling_s is not None:
        extra["CELERY_PEER_POLLING_S"] = str(polling_s)
    env = peer_env(**extra)
    # Gossip, mingle and heartbeats are cluster features (broadcast messages between
    # workers); with one worker they only add broker traffic.
    worker_argv = [str(bin_dir / "celery"), "-A", "celery_app", "worker", "--pool", pool]
    worker_argv += ["--concurrency", "1" if pool == "solo" else "2"]
    worker_argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker_log = directory / "worker.log"
    interval = CELERY_DEFAULT_RESULT_INTERVAL_S if polling_s is None else polling_s
    sender = [str(bin_dir / "python"), str(PEERS_DIR / "celery_peer.py")]
    sender += ["--shape", run.shape, "--tasks", str(run.tasks), "--timeout", str(limit_s)]
    sender += ["--result-interval", str(interval)]
    marker = directory / "worker.ready"
    try:
        with service(worker_argv, env, worker_log, cwd=PEERS_DIR) as worker:
            run.start_seconds = wait_until(worker, marker.exists, "celery worker", worker_log)
            with RssSampler(worker.pid, SERVICE_SAMPLE_S, children=True) as rss:
                reply = run_client(sender, env, directory / "sender.log", limit_s + CLIENT_GRACE_S)
            _apply(run, reply, rss)
    except RuntimeError as error:
        run.outcome, run.detail = ERROR, str(error)
    if run.outcome != OK:
        run.detail += f"\nworker log tail:\n{log_tail(worker_log)}"
    return run
