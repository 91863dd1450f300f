"""The parent of every `command_executor` program: nothing the program starts outlives it.

The server runs `python -I -S command_launcher.py SERVER_PID UID GID GRACE PROGRAM ARG...`
in a new session (UID/GID -1: keep the server's), with a fixed environment of its own; the
program's environment arrives as a JSON object on stdin, which the program then gets as
/dev/null. So nothing a task sets in `env` reaches this process, which keeps the server's
user (root, say: a locale or time zone path chosen by a task is never loaded here). It
forks, drops the program's privileges and execs it, then stays as its parent:

- a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the program orphans (`setsid`, a
  double fork) is re-parented here instead of to init, so it can always be found;
- when the program exits, everything left below the launcher is killed, then the launcher
  exits with the program's status;
- SIGTERM (the server cancels, or a timeout): SIGTERM to everything below, SIGKILL after
  GRACE seconds;
- the server dies (even by SIGKILL): the parent-death signal (SIGUSR1) makes the launcher
  kill everything at once, and the program itself gets SIGKILL when the launcher dies.

Signals reach the main loop through a wakeup pipe (`signal.set_wakeup_fd`): one byte per
signal, waited for with `select`. A handler raising out of a blocking `waitpid` instead
loses a signal that lands between Python's check and the system call (the wait then
blocks until the program ends: a flood never stopped, a server's death never noticed).

Why a launcher rather than `preexec_fn`: the server is threaded, and Python code between
fork and exec there can deadlock on a lock another thread held. This process is
single-threaded, so its fork child may run Python (and ctypes) safely. It keeps the
server's user so that the program, which runs as the command user, cannot kill it; and the
program's parent-death signal is set after its uid changes, which would clear it.

Standard library only: it runs isolated (-I -S), apart from the server's packages.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
HURRY = signal.SIGUSR1
"""The launcher's parent-death signal: the server is gone, kill everything now."""
POLL_S = 0.01

WATCHED = (signal.SIGTERM, HURRY, signal.SIGCHLD)
STOPS = frozenset({signal.SIGTERM, HURRY})

_libc: Any = None
_stops: set[int] = set()
"""Stop signals noted by the handler too: the pipe drops bytes when full (a storm of
SIGCHLD from orphans), and a stop must not be one of them."""
_tracked = False
"""Whether every descendant can be found from here (/proc and the subreaper); if not, the
program's process group is signalled too."""


def _prctl(option: int, value: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return bool(_libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False  # not Linux: the process group is all the server has


def _noted(signum: int, _frame: object) -> None:
    """The wakeup pipe carries the signal (a handler must exist for Python to write it)."""
    if signum in STOPS:
        _stops.add(signum)


def _watch_signals() -> int:
    """The read end of a pipe that gets one byte (its number) per watched signal."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in WATCHED:
        signal.signal(signum, _noted)
    return read_end


def _next_signals(wakeup: int, timeout: float | None) -> set[int]:
    """The signals that came (waiting up to `timeout` seconds for one; None: no limit)."""
    select.select([wakeup], [], [], timeout)
    try:
        return set(os.read(wakeup, 4096)) | _stops
    except BlockingIOError:
        return set(_stops)


def _descendants(root: int) -> list[int] | None:
    """Every process below `root` (from /proc; None where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            found.append(child)
            queue.append(child)
    return found


def _signal_all(signum: int, program: int) -> None:
    found = _descendants(os.getpid())
    for pid in found or ():
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
    if found is None or not _tracked:
        # Where /proc or the subreaper is missing. Not otherwise: once the program is
        # reaped and its group empty, that number may be another process group's.
        with contextlib.suppress(OSError):
            os.killpg(program, signum)


def _children_left() -> bool:
    """Reap whatever has exited; whether any child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _kill_everything(program: int) -> None:
    # Rounds, because a process forked during one walk is found by the next.
    while True:
        _signal_all(signal.SIGKILL, program)
        if not _children_left():
            return
        time.sleep(POLL_S)


def _reap(program: int) -> int | None:
    """Reap whatever has exited; the program's wait status once it is among them."""
    status = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == program:
            status = wait_status


def _stop(program: int, grace: float, wakeup: int, hurry: bool) -> None:
    if not hurry:
        _signal_all(signal.SIGTERM, program)
        deadline = time.monotonic() + grace
        while _children_left():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or HURRY in _next_signals(wakeup, min(POLL_S, remaining)):
                break
    _kill_everything(program)


def _read_environment() -> dict[str, str]:
    """The program's environment from stdin (to its end), then stdin becomes /dev/null."""
    chunks = []
    while chunk := os.read(0, 65536):
        chunks.append(chunk)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    env = json.loads(b"".join(chunks))
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("the environment is not an object of strings")
    return env


def _exec(launcher: int, uid: int, gid: int, argv: list[str], env: dict[str, str]) -> None:
    """In the fork child: become the program (never returns)."""
    try:
        signal.set_wakeup_fd(-1)  # the launcher's pipe is not the program's
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, *WATCHED):
            signal.signal(signum, signal.SIG_DFL)
        os.setpgid(0, 0)
        if uid >= 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
        if os.getppid() != launcher:
            os._exit(125)  # the launcher is already gone
        os.execve(argv[0], argv, env)
    except BaseException as error:  # report anything, never return
        os.write(2, f"taskgrove: cannot run {argv[0]}: {error}\n".encode())
    os._exit(127)


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(OSError):  # SIGKILL's handler cannot be set
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def main(args: list[str]) -> None:
    global _tracked
    server, uid, gid = int(args[0]), int(args[1]), int(args[2])
    grace, argv = float(args[3]), args[4:]
    wakeup = _watch_signals()  # first: a stop that comes from now on is not lost
    _prctl(PR_SET_PDEATHSIG, HURRY)
    if os.getppid() != server:
        os._exit(125)  # the server died before the parent-death signal was set
    try:
        env = _read_environment()
    except (OSError, ValueError) as error:
        os.write(2, f"taskgrove: no environment for {argv[0]}: {error}\n".encode())
        os._exit(125)
    _tracked = _prctl(PR_SET_CHILD_SUBREAPER, 1)
    launcher = os.getpid()
    program = os.fork()
    if program == 0:
        _exec(launcher, uid, gid, argv, env)
    status = None
    while status is None:
        # SIGCHLD wakes this when the program or an orphan exits (reaped here, too).
        stops = _next_signals(wakeup, None) & STOPS
        if stops:
            _stop(program, grace, wakeup, hurry=HURRY in stops)
            os._exit(128 + signal.SIGTERM)
        status = _reap(program)
    _kill_everything(program)  # what the program left running
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
