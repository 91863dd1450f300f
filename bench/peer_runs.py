"""One run of a peer, driven from taskgrove's venv: a fresh Prefect 3 API server or Celery 5
worker (its own temp folder and SQLite files, 127.0.0.1 only), the peer's script
(`peers/<peer>_peer.py`) run in the peer's venv, and its `PEER_RESULT {json}` line read.
Processes: `processes.py`."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ERROR, OK, TIMEOUT
from peer_venvs import PEERS_DIR
from processes import free_port, log_tail, run_bounded, service, wait_until
from sampler import MB, RssSampler
from taskgrove_server.testing import LOOPBACK

RESULT_MARK = "PEER_RESULT "
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
    """Prefect: flow call -> the API has all N task runs recorded COMPLETED."""
    service_peak_rss_mb: float | None = None
    """Peak RSS of the service: taskgrove server, Prefect API server, Celery worker
    (process trees summed)."""
    client_peak_rss_mb: float | None = None
    start_seconds: float | None = None
    """The service's start-up until healthy/ready (not timed)."""
    timings: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass(slots=True)
class Peer:
    """How to run one peer: its service, when that is ready, and its client script."""

    what: str
    service_argv: list[str]
    service_env: dict[str, str]
    ready: Callable[[], bool]
    client_argv: list[str]
    client_env: dict[str, str]
    cwd: Path | None = None


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


def _result(code: int | None, out: str, log_path: Path, limit_s: float) -> dict[str, Any]:
    """The client's result line as a dict, or {"outcome": TIMEOUT/ERROR, "detail": ...}."""
    if code is None:
        return {"outcome": TIMEOUT, "detail": f"not done after {limit_s:g} s"}
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    return {"outcome": ERROR, "detail": f"exit {code}, no result line:\n{log_tail(log_path)}"}


def run_peer(peer: Peer, run: PeerRun, directory: Path, limit_s: float) -> PeerRun:
    """Start the service, wait until it is ready (not timed), run the client under the
    run's limit with the service's RSS sampled, stop everything."""
    service_log, client_log = directory / "service.log", directory / "client.log"
    try:
        with service(peer.service_argv, peer.service_env, service_log, peer.cwd) as process:
            run.start_seconds = wait_until(process, peer.ready, peer.what, service_log)
            with RssSampler(process.pid, SERVICE_SAMPLE_S, children=True) as rss:
                limit = limit_s + CLIENT_GRACE_S
                code, out = run_bounded(peer.client_argv, peer.client_env, client_log, limit)
        reply = _result(code, out, client_log, limit)
        run.outcome = reply.pop("outcome", ERROR)
        run.detail = reply.pop("detail", "")
        run.seconds = reply.pop("seconds", None)
        run.persisted_seconds = reply.pop("persisted_seconds", None)
        run.client_peak_rss_mb = reply.pop("client_peak_rss_mb", None)
        run.timings = reply
        run.service_peak_rss_mb = rss.peak_rss / MB
    except RuntimeError as error:
        run.outcome, run.detail = ERROR, str(error)
    if run.outcome != OK:
        run.detail += f"\n{peer.what} log tail:\n{log_tail(service_log)}"
    return run


def _run_dir(workdir: Path, peer: str, run: PeerRun) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{peer}-{run.shape}-{run.tasks}-", dir=workdir))


def _client(bin_dir: Path, script: str, run: PeerRun, limit_s: float) -> list[str]:
    argv = [str(bin_dir / "python"), str(PEERS_DIR / script), "--shape", run.shape]
    return [*argv, "--tasks", str(run.tasks), "--timeout", str(limit_s)]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200 and reply.read().strip() == b"true")
    except (urllib.error.URLError, OSError):
        return False


def run_prefect(bin_dir: Path, limit_s: float, run: PeerRun, workdir: Path) -> PeerRun:
    """A fresh `prefect server start` (SQLite in a temp folder, no UI), then the flow in
    its own process with PREFECT_API_URL pointing at it."""
    directory = _run_dir(workdir, "prefect", run)
    port = free_port()
    api = f"http://{LOOPBACK}:{port}/api"
    server = [str(bin_dir / "prefect"), "server", "start", "--no-ui"]
    peer = Peer(
        what="prefect server",
        service_argv=[*server, "--host", LOOPBACK, "--port", str(port)],
        service_env=peer_env(
            PREFECT_HOME=str(directory / "server-home"),
            PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{directory / 'prefect.db'}",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        ),
        ready=lambda: _healthy(f"{api}/health"),
        client_argv=_client(bin_dir, "prefect_peer.py", run, limit_s),
        client_env=peer_env(PREFECT_HOME=str(directory / "client-home"), PREFECT_API_URL=api),
    )
    return run_peer(peer, run, directory, limit_s)


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
    directory = _run_dir(workdir, "celery", run)
    extra = {"CELERY_PEER_DIR": str(directory)}
    if polling_s is not None:
        extra["CELERY_PEER_POLLING_S"] = str(polling_s)
    env = peer_env(**extra)
    worker = [str(bin_dir / "celery"), "-A", "celery_app", "worker", "--pool", pool]
    worker += ["--concurrency", "1" if pool == "solo" else "2"]
    # Gossip, mingle and heartbeats are cluster features (broadcast messages between
    # workers); with one worker they only add broker traffic.
    worker += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    interval = CELERY_DEFAULT_RESULT_INTERVAL_S if polling_s is None else polling_s
    sender = _client(bin_dir, "celery_peer.py", run, limit_s)
    peer = Peer(
        what="celery worker",
        service_argv=worker,
        service_env=env,
        ready=(directory / "worker.ready").exists,
        client_argv=[*sender, "--result-interval", str(interval)],
        client_env=env,
        cwd=PEERS_DIR,
    )
    return run_peer(peer, run, directory, limit_s)
