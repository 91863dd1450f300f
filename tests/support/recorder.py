"""A `record` executor for server subprocesses: every attempt appends a start line and,
when it finishes, an end line (`start|end TASK_ID ATTEMPT PID`) to one file, so a test
can tell which process ran what, and when.

It is installed the way users install executors (an entry point of the
`taskgrove.executors` group): `install_recorder(folder)` writes a module and its
dist-info into `folder`; a server with `folder` first on PYTHONPATH loads it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_FILE_ENV = "TG_RECORD_FILE"

_MODULE = """
import asyncio
import os

from taskgrove_server.executors.base import Executor


def _line(kind, context):
    text = f"{kind} {context.task_id} {context.attempt} {os.getpid()}\\n"
    fd = os.open(os.environ["TG_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, text.encode())  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


async def _run(context):
    _line("start", context)
    await asyncio.sleep(float(context.inputs.get("seconds", 0)))
    _line("end", context)
    return {"pid": os.getpid()}


EXECUTOR = Executor(id="record", run=_run, description="sleeps; records each attempt")
"""


def install_recorder(folder: Path) -> Path:
    """Write the plugin into `folder` (put it on the server's PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tg_recorder.py").write_text(_MODULE)
    info = folder / "tg_recorder-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tg-recorder\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[taskgrove.executors]\nrecord = tg_recorder:EXECUTOR\n")
    return folder


def recorded(
    name: str, seconds: float = 0.0, parent: str | None = "root", **fields: Any
) -> dict[str, Any]:
    """A `record` task spec (id = name) sleeping `seconds`, for `create_task_tree`."""
    spec = {"id": name, "name": name, "executor": "record", "inputs": {"seconds": seconds}}
    if parent is not None:
        spec["parent_id"] = parent
    return {**spec, **fields}


def record_tree(n: int, seconds: float, max_attempts: int = 3) -> list[dict[str, Any]]:
    """A group `root` over `n` record tasks t0..t(n-1)."""
    children = [recorded(f"t{index}", seconds, max_attempts=max_attempts) for index in range(n)]
    return [{"id": "root", "name": "root"}, *children]


@dataclass(frozen=True)
class Run:
    task_id: str
    attempt: int
    pid: int
    ended: bool


def read_runs(path: Path) -> dict[str, list[Run]]:
    """Task id -> its runs in the order they started (ended: an end line followed)."""
    starts: dict[tuple[str, int, int], int] = {}
    runs: dict[str, list[Run]] = defaultdict(list)
    ends: set[tuple[str, int, int]] = set()
    if not path.exists():
        return {}
    # A line being written while we read may show in part: only whole lines count.
    for line in path.read_text().split("\n")[:-1]:
        kind, task_id, attempt, pid = line.split()
        key = (task_id, int(attempt), int(pid))
        if kind == "start":
            starts[key] = len(starts)
        else:
            ends.add(key)
    for (task_id, attempt, pid), _ in sorted(starts.items(), key=lambda item: item[1]):
        runs[task_id].append(Run(task_id, attempt, pid, (task_id, attempt, pid) in ends))
    return dict(runs)
