"""One command as a contained process: started through `command_launcher`, its output
read up to a cap, and stopped as a whole (the launcher kills everything below it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskgrove_server.executors.builtin.command_policy import CommandUser

log = logging.getLogger(__name__)

LAUNCHER = str(Path(__file__).with_name("command_launcher.py"))
LAUNCHER_ENV = {"LC_ALL": "C.UTF-8"}
"""The launcher's own environment; the program's is sent on its stdin."""
KILL_GRACE_S = 2.0
"""Between SIGTERM and SIGKILL when a command is stopped."""
_CHUNK = 65536
_LOG_LINE_BYTES = 8192
"""A partial line longer than this goes to the log without waiting for its end."""


@dataclass(frozen=True, slots=True)
class Finished:
    exit_code: int
    stdout: bytes
    stderr: bytes
    over_limit: str | None
    """`stdout` or `stderr` when that stream went over the cap and the command was
    stopped (it then keeps the first `limit` bytes)."""


async def run_contained(
    program: str,
    args: Sequence[str],
    *,
    cwd: str,
    env: dict[str, str],
    user: CommandUser | None,
    limit: int,
    log: Callable[[str], None] | None = None,
) -> Finished:
    """Run `program` to its end; cancelled, it is stopped with everything it started.
    `log` receives each line of its output as it comes (stderr's marked `stderr: `)."""
    uid, gid = (user.uid, user.gid) if user is not None else (-1, -1)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-I", "-S", LAUNCHER),
        *(str(os.getpid()), str(uid), str(gid), str(KILL_GRACE_S), program, *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=LAUNCHER_ENV,
        start_new_session=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None and process.stderr is not None
    try:
        await _send_environment(process.stdin, env)
        stop = lambda: _signal(process.pid, signal.SIGTERM)  # noqa: E731
        out_lines = _Lines(log, "") if log is not None else None
        err_lines = _Lines(log, "stderr: ") if log is not None else None
        (out, out_over), (err, err_over) = await asyncio.gather(
            _read_capped(process.stdout, limit, stop, out_lines),
            _read_capped(process.stderr, limit, stop, err_lines),
        )
        code = await _reap(process)
    except BaseException:  # cancelled (cancel, timeout): nothing may outlive the attempt
        _signal(process.pid, signal.SIGTERM)
        await _reap_despite_cancellation(process)
        raise
    over = "stdout" if out_over else "stderr" if err_over else None
    return Finished(code, out, err, over)


async def _send_environment(stdin: asyncio.StreamWriter, env: dict[str, str]) -> None:
    """The program's environment to the launcher (which reads it all before it forks)."""
    with contextlib.suppress(ConnectionError):  # it exited already: its code says why
        stdin.write(json.dumps(env).encode())
        await stdin.drain()
    stdin.close()


class _Lines:
    """Cuts a stream's bytes into lines for the attempt's log."""

    def __init__(self, log: Callable[[str], None], prefix: str) -> None:
        self._log = log
        self._prefix = prefix
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > _LOG_LINE_BYTES:  # no line break in sight: log it as is
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._log(self._prefix + line.decode(errors="replace"))

    def end(self) -> None:
        if self._partial:
            self._log(self._prefix + self._partial.decode(errors="replace"))
            self._partial = b""


async def _read_capped(
    stream: asyncio.StreamReader,
    limit: int,
    stop: Callable[[], None],
    lines: _Lines | None = None,
) -> tuple[bytes, bool]:
    """Up to `limit` bytes until EOF; beyond it, stop the command and read no more (reading
    a flood only to throw it away would keep the server busy)."""
    kept = bytearray()
    while chunk := await stream.read(_CHUNK):
        kept += chunk
        if len(kept) > limit:
            stop()
            if lines is not None:
                lines.feed(chunk[: len(chunk) - (len(kept) - limit)])
                lines.end()
            return bytes(kept[:limit]), True
        if lines is not None:
            lines.feed(chunk)
    if lines is not None:
        lines.end()
    return bytes(kept), False


async def _reap_despite_cancellation(process: asyncio.subprocess.Process) -> None:
    """`_reap` to its end however often the attempt is cancelled meanwhile (CancelTask,
    then the server's shutdown): the attempt must not end before its launcher has, or the
    shutdown would leave the launcher running and unreaped. `_reap` is bounded."""
    reaping = asyncio.ensure_future(_reap(process))
    while not reaping.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(reaping)
    if not reaping.cancelled() and (error := reaping.exception()) is not None:
        log.warning("command %s: reaping it failed: %r", process.pid, error)


async def _reap(process: asyncio.subprocess.Process) -> int:
    """The launcher's exit code, once it has exited (SIGKILL if it outstays the grace) and
    the pipes are empty (`wait()` waits for them)."""
    try:
        async with asyncio.timeout(KILL_GRACE_S + 2):
            # Not wait(): it also waits for the pipes, and a flood is not read any more.
            while process.returncode is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        _signal(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    try:
        async with asyncio.timeout(KILL_GRACE_S):
            for stream in (process.stdout, process.stderr):
                while stream is not None and await stream.read(_CHUNK):
                    pass  # what the pipe held when its writers died: bounded
            return await process.wait()
    except TimeoutError:
        # Only a process that escaped the launcher can hold the pipes open this long.
        log.warning("command %s: its output pipes stay open after it ended", process.pid)
        return process.returncode if process.returncode is not None else -signal.SIGKILL


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
