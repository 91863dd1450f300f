"""Test utilities for users of the server: `taskgrove serve` as a real subprocess.

    from taskgrove_server.testing import ServerProcess, sqlite_url

    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as server:
        async with AsyncClient(server.address) as client:
            ...

The server runs as `python -m taskgrove._cli serve --address 127.0.0.1:PORT --db URL`; its
address is read from the `serving on HOST:PORT` line it prints. It is stopped by its PID:
SIGTERM, a bounded wait, then SIGKILL. This module uses only the standard library: it runs
the server's command and touches none of its internals.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["LOOPBACK", "ServerProcess", "sqlite_url"]

LOOPBACK = "127.0.0.1"
_SERVING = re.compile(r"serving on (\S+)")
_TAIL_LINES = 200


def sqlite_url(path: Path | str) -> str:
    """The `--db` URL of an SQLite file (made by the server when missing)."""
    return f"sqlite+aiosqlite:///{path}"


class ServerProcess:
    """One `taskgrove serve` subprocess on `db_url`, listening on `host` (loopback).

    - `extra_env`: variables added to this process's environment (e.g.
      `TASKGROVE_MAX_CONCURRENCY`); `TASKGROVE_LOG_LEVEL` is WARNING unless set there.
    - `log_path`: the server's output (stdout and stderr) is appended to this file too.
      Either way the last lines are kept: `log_tail()`.
    - `wrapper`: a command prefix the server runs under, e.g. `["py-spy", "record", "-o",
      "profile.txt", "--"]`. The wrapper must run the server as its only child process;
      `pid` is then the server's own PID (Linux), and that PID is what `stop` signals.

    `start()` may be called again after `stop()` (same database; `port` to keep the
    address). Use it as a context manager to stop it whatever happens.
    """

    def __init__(
        self,
        db_url: str,
        *,
        host: str = LOOPBACK,
        extra_env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        wrapper: Sequence[str] = (),
        python: str = sys.executable,
    ) -> None:
        self.db_url = db_url
        self.host = host
        self.extra_env = dict(extra_env or {})
        self.log_path = log_path
        self.wrapper = list(wrapper)
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        """HOST:PORT the server serves on, once started."""
        self.pid = 0
        """The server's own PID (under a wrapper: the wrapper's child), once started."""
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._reader: threading.Thread | None = None

    def command(self, port: int = 0) -> list[str]:
        serve = [self.python, "-m", "taskgrove._cli", "serve"]
        serve += ["--address", f"{self.host}:{port}", "--db", self.db_url]
        return [*self.wrapper, *serve]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def start(self, port: int = 0, timeout: float = 30.0) -> str:
        """Start the server (port 0: a free one) and wait, at most `timeout` seconds, for
        its `serving on` line; returns its address. Raises RuntimeError (with the end of
        its output) when it does not come, after stopping the process."""
        if self.process is not None:
            raise RuntimeError("the server is already running")
        # No web console unless asked for (extra_env TASKGROVE_HTTP): test servers run side
        # by side, and the console's default port is one.
        env = {
            **os.environ,
            "TASKGROVE_LOG_LEVEL": "WARNING",
            "TASKGROVE_HTTP": "off",
            **self.extra_env,
        }
        self.address, self.pid = "", 0
        self._tail.clear()
        self.process = subprocess.Popen(
            self.command(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        assert self.process.stdout is not None
        serving: list[str] = []
        served = threading.Event()
        self._reader = threading.Thread(
            target=self._read,
            args=(self.process.stdout, serving, served),
            name="server-output",
            daemon=True,
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not served.wait(0.02):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the server did not start; its output:\n{self.log_tail()}")
        self.address = serving[0]
        try:
            self.pid = self._server_pid(self.process.pid) if self.wrapper else self.process.pid
        except RuntimeError:
            self.stop()
            raise
        return self.address

    def _read(self, stream: IO[bytes], serving: list[str], served: threading.Event) -> None:
        """Drain the server's output (so it never blocks on a full pipe), note the address
        of its `serving on` line, keep the last lines and append them to the log file."""
        log = self.log_path.open("ab") if self.log_path is not None else None
        try:
            for raw in stream:
                if log is not None:
                    log.write(raw)
                    log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self._tail.append(line)
                if not served.is_set() and (match := _SERVING.search(line)):
                    serving.append(match.group(1))
                    served.set()
        finally:
            stream.close()
            if log is not None:
                log.close()

    @staticmethod
    def _server_pid(wrapper_pid: int) -> int:
        """The only child of the wrapper process (Linux: /proc)."""
        children: list[int] = []
        for task in Path(f"/proc/{wrapper_pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                children += [int(pid) for pid in (task / "children").read_text().split()]
        if len(children) != 1:
            raise RuntimeError(f"expected one server under the wrapper, found {children}")
        return children[0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Send `sig` to the server's PID, wait at most `timeout` seconds, then SIGKILL it
        (and the wrapper, if it stays). Returns the exit code of the process started (the
        wrapper's when there is one), None if none was running."""
        process = self.process
        if process is None:
            return None
        pid = self.pid or process.pid
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(timeout)
        if self._reader is not None:
            # EOF comes once every holder of the pipe is gone (children of the server too):
            # do not wait long for it; the thread ends by itself then.
            self._reader.join(min(timeout, 5.0))
            self._reader = None
        self.process = None
        return code

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines the server printed since it was last started."""
        return "\n".join(list(self._tail)[-lines:])

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
