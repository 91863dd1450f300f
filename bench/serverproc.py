"""`taskgrove serve` as a subprocess on 127.0.0.1 (optionally under py-spy), stopped by PID,
and a thread sampling its resident memory."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

LOOPBACK = "127.0.0.1"
_SERVING = re.compile(r"serving on (\S+)")
MB = 1024 * 1024


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def pyspy_path() -> str:
    """py-spy next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    return found


@dataclass
class ServerProcess:
    """One server on `db_url` (default: a fresh SQLite file under `workdir`); its output
    goes to a log file under `workdir`."""

    workdir: Path
    db_url: str | None = None
    """SQLAlchemy URL of the server's database; None: `workdir`/bench.db (SQLite)."""
    profile_path: Path | None = None
    """When set, the server runs under `py-spy record` writing collapsed stacks here."""
    profile_rate: int = 100
    process: subprocess.Popen[bytes] | None = None
    pid: int = 0
    """The server's own PID (py-spy's child when profiling)."""
    address: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"

    def command(self) -> list[str]:
        serve = [
            sys.executable,
            "-m",
            "taskgrove._cli",
            "serve",
            "--address",
            f"{LOOPBACK}:0",
            "--db",
            self.db_url or sqlite_url(self.workdir / "bench.db"),
        ]
        if self.profile_path is None:
            return serve
        record = [pyspy_path(), "record", "--nonblocking", "--threads", "--format", "raw"]
        record += ["--rate", str(self.profile_rate), "-o", str(self.profile_path), "--"]
        return record + serve

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait for its "serving on ADDRESS" line."""
        env = {**os.environ, "TASKGROVE_LOG_LEVEL": "WARNING"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _SERVING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.address = match.group(1)
                self.pid = self._server_pid()
                return self.address
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"server did not start; log:\n{self.log_tail()}")

    def _server_pid(self) -> int:
        assert self.process is not None
        if self.profile_path is None:
            return self.process.pid
        children = psutil.Process(self.process.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one server under py-spy, found {children}")
        return children[0].pid

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the server's PID, wait (bounded), SIGKILL if it does not stop."""
        if self.process is None:
            return None
        pid = self.pid or self.process.pid
        try:
            server = psutil.Process(pid)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            server.kill()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        self.process = None
        return code

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; keeps the peak.
    Also reads the kernel's own high-water mark (VmHWM) at the end, where available."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_rss = 0
        self.samples = 0
        self.hwm = 0
        self.cpu_seconds = 0.0
        self._cpu_start = 0.0

    def _sample(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self.samples += 1
        except psutil.Error:
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def _read_hwm(self) -> int:
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def __enter__(self) -> RssSampler:
        self._cpu_start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        with contextlib.suppress(psutil.Error):
            self.cpu_seconds = self._cpu() - self._cpu_start
        self.hwm = self._read_hwm()
