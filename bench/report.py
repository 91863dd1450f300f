"""What every results file records and every run's last line says: the machine, the code
measured, when the run started and how long it took (with the load before and after); and
the atomic write of the JSON file. Shared by `make bench` and `make bench-peers`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sampler import MB

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_mb": psutil.virtual_memory().total // MB,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_end": _load(),
    }


def revision() -> dict[str, Any]:
    """The code measured: the checkout's commit (and whether server/ or client/ differ from
    it), or, when the server code comes from elsewhere on PYTHONPATH (an exported revision),
    $TASKGROVE_BENCH_REVISION."""

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    import taskgrove_server

    code = Path(taskgrove_server.__file__).resolve().parent
    exported = not code.is_relative_to(REPO_DIR)
    if exported:
        commit = os.environ.get("TASKGROVE_BENCH_REVISION", "unknown")
        label = f"{commit} (exported to {code.parent})"
    else:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "server", "client"))
        label = commit + (" + uncommitted server/client changes" if dirty else "")
    return {"commit": commit, "label": label, "server_code": str(code), "exported": exported}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a .tmp file next to it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(slots=True)
class Session:
    """One bench run, from its start (made when the run starts)."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_at_start: float = field(default_factory=_load)
    _clock: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    revision: dict[str, Any] = field(default_factory=dict)

    def finish(self) -> float:
        """Marks the end of the measuring; returns the seconds it took."""
        self.elapsed = time.monotonic() - self._clock
        self.revision = revision()
        return self.elapsed

    def note(self) -> str:
        """The last line's tail: the code, the CPUs, the load, the minutes."""
        return (
            f"Code: {self.revision['label']}. {os.cpu_count()} CPUs, "
            f"load {self.load_at_start:.1f} -> {_load():.1f}, {self.elapsed / 60:.1f} min."
        )

    def header(self) -> dict[str, Any]:
        """The first keys of the results file."""
        return {
            "started_at": self.started.isoformat(timespec="seconds"),
            "elapsed_seconds": self.elapsed,
            "revision": self.revision,
            "machine": {**machine(), "loadavg_1m_at_start": self.load_at_start},
        }
