"""`taskgrove_server.testing.ServerProcess`: the log file, a wrapper command (the server's
own PID is what gets signalled) and a server that does not start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from taskgrove import AsyncClient
from taskgrove_server.testing import ServerProcess, sqlite_url

# Runs its arguments as a child and exits with the child's code (a stand-in for py-spy).
WRAPPER = [
    sys.executable,
    "-c",
    "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_wrapped_server_is_stopped_by_its_own_pid(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ServerProcess(sqlite_url(tmp_path / "tg.db"), log_path=log, wrapper=WRAPPER) as server:
        assert server.process is not None
        assert server.pid != server.process.pid
        async with AsyncClient(server.address) as client:
            assert await client.list_executors()
        pid = server.pid
        assert server.stop() == 0  # SIGTERM to the server; the wrapper passes its code on
    assert not alive(pid)
    assert "serving on 127.0.0.1:" in log.read_text()


def test_a_server_that_does_not_start_raises_with_its_output(tmp_path: Path) -> None:
    server = ServerProcess("nosuchdb://nowhere")
    with pytest.raises(RuntimeError, match="did not start") as raised:
        server.start(timeout=30)
    assert server.process is None
    assert server.log_tail() in str(raised.value)
