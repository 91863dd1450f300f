"""The processes the peer runs start (a Prefect API server, a Celery worker, the peers'
client scripts): each in its own session, its output in a log file, every wait bounded,
and stopped by its PID, with whatever descendants it leaves, however the run ends."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
from taskgrove_server.testing import LOOPBACK

STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0
"""A fresh Prefect server migrates its database first: 5-20 s on this machine."""


def stop_tree(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to the process's PID, a bounded wait, then SIGKILL; then the same for any
    descendant it left behind (listed before the signal; psutil checks each PID still
    names the same process, so a reused PID is never signalled)."""
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


@contextlib.contextmanager
def service(
    argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running process, its output in `log_path`, stopped by `stop_tree` on exit
    whatever happens (an exception, SIGTERM turned into SystemExit, Ctrl-C)."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a signal to the bench's terminal does not race ours
        )
        try:
            yield process
        finally:
            stop_tree(process)


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


def run_bounded(
    argv: list[str], env: Mapping[str, str], log_path: Path, limit_s: float
) -> tuple[int | None, str]:
    """Run a script (stderr to `log_path`) for at most `limit_s`: (exit code, stdout), the
    exit code None when it had to be stopped."""
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
            return None, ""
        finally:
            stop_tree(process)
    return process.returncode, out.decode(errors="replace")


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError), path.open(errors="replace") as file:
        return "".join(collections.deque(file, maxlen=lines))
    return ""


def free_port() -> int:
    """A free port on 127.0.0.1, for a service that cannot report the one it bound."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port
