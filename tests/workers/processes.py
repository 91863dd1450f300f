"""Worker processes for fault tests: `taskgrove worker` running a recording executor.

Every attempt appends `start|done <task id> <attempt> <pid>` to the record file (one
write per line, so lines of several processes never mix), which is how the tests tell
what ran where and how often.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.clients import environment

WORKER_MODULE = """
import asyncio, os
from taskgrove import Worker

worker = Worker("recorder")
RECORD = os.environ["RECORD_FILE"]

def record(kind, ctx):
    with open(RECORD, "a") as out:
        out.write(f"{kind} {ctx.task_id} {ctx.attempt} {os.getpid()}\\n")

@worker.executor("record", input_schema={"type": "object"})
async def run(ctx):
    record("start", ctx)
    await asyncio.sleep(ctx.inputs.get("seconds", 0))
    record("done", ctx)
    return {"pid": os.getpid()}
"""


@dataclass(frozen=True, slots=True)
class Line:
    kind: str
    task_id: str
    attempt: int
    pid: int


def records(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        kind, task_id, attempt, pid = text.split()
        lines.append(Line(kind, task_id, int(attempt), int(pid)))
    return lines


class WorkerProcess:
    def __init__(self, directory: Path, port: int, record_file: Path, *, slots: int) -> None:
        module = directory / "recording_worker.py"
        if not module.exists():
            module.write_text(WORKER_MODULE)
        self.stderr_path = directory / f"worker-{id(self)}.log"
        command = [
            str(Path(sys.executable).with_name("taskgrove")),
            "worker",
            "recording_worker:worker",
            "--address",
            f"127.0.0.1:{port}",
            "--slots",
            str(slots),
        ]
        env = environment(RECORD_FILE=str(record_file), PYTHONPATH=str(directory))
        with self.stderr_path.open("w") as log:
            self.process = subprocess.Popen(command, cwd=directory, env=env, stderr=log)
        self.pid = self.process.pid

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    @property
    def log(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
