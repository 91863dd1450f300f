"""Several `taskgrove serve` replicas as subprocesses on one PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from taskgrove_server.testing import ServerProcess

from tests.support.recorder import RECORD_FILE_ENV, install_recorder


class Replicas:
    """`count` replicas with the `record` executor, short tree leases, and their output
    in `folder` (`replica-N.log`); `record_file` is where the executor writes."""

    def __init__(
        self, db_url: str, folder: Path, count: int = 3, lease_s: float = 2.0, **env: str
    ) -> None:
        plugin = install_recorder(folder / "plugin")
        self.record_file = folder / "runs.txt"
        path = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p)
        self.processes = [
            ServerProcess(
                db_url,
                extra_env={
                    "PYTHONPATH": path,
                    RECORD_FILE_ENV: str(self.record_file),
                    "TASKGROVE_TREE_LEASE_SECONDS": str(lease_s),
                    **env,
                },
                log_path=folder / f"replica-{index}.log",
            )
            for index in range(count)
        ]

    def __getitem__(self, index: int) -> ServerProcess:
        return self.processes[index]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            if process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a test may have paused it
            process.stop(signal.SIGKILL)


@contextlib.contextmanager
def replicas(db_url: str, folder: Path, count: int = 3, **options: object) -> Iterator[Replicas]:
    group = Replicas(db_url, folder, count, **options)  # type: ignore[arg-type]
    try:
        group.start()
        yield group
    finally:
        group.stop()
