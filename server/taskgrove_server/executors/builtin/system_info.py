"""`system_info_executor`: real CPU, memory and disk figures of the server's machine."""

from __future__ import annotations

import asyncio
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from taskgrove_server.executors.base import ExecutionContext, Executor

RESOURCES = ("cpu", "memory", "disk", "all")


def _cpu_brand() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuSampler:
    """Machine-wide CPU use without blocking: each reading compares CPU times with those
    of the previous sample, taken at least `window` seconds earlier (until then the last
    figure stands). The first sample is taken when the sampler is made (server start), so
    even the first task reports a real figure, and 100 tasks at once cost 100 reads of
    /proc/stat instead of 100 sleeps of 0.1 s."""

    def __init__(self, window: float = 0.1) -> None:
        self._window = window
        self._times = psutil.cpu_times()
        self._at = time.monotonic()
        self._percent: float | None = None
        self._over = 0.0
        self._lock = threading.Lock()  # `all` reads it from a thread

    def read(self) -> tuple[float, float]:
        """(percent busy over all CPUs, seconds the figure covers)."""
        with self._lock:
            return self._read()

    def _read(self) -> tuple[float, float]:
        now = time.monotonic()
        if self._percent is None or now - self._at >= self._window:
            times = psutil.cpu_times()
            total = sum(times) - sum(self._times)
            idle = (times.idle + getattr(times, "iowait", 0.0)) - (
                self._times.idle + getattr(self._times, "iowait", 0.0)
            )
            if total > 0:
                self._percent = round(min(100.0, max(0.0, 100.0 * (total - idle) / total)), 1)
                self._over = now - self._at
                self._times, self._at = times, now
            elif self._percent is None:
                return 0.0, 0.0  # not one clock tick since the last sample
        assert self._percent is not None
        return self._percent, round(self._over, 3)


_CPU = CpuSampler()
_STATIC = {
    "cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
    "logical_cores": psutil.cpu_count(logical=True),
    "brand": _cpu_brand(),
}


def cpu_info() -> dict[str, Any]:
    percent, over = _CPU.read()
    return {**_STATIC, "percent": percent, "sampled_over_seconds": over}


def memory_info() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "total_bytes": memory.total,
        "available_bytes": memory.available,
        "used_bytes": memory.used,
    }


def disk_info() -> dict[str, Any]:
    disk = psutil.disk_usage("/")
    return {
        "path": "/",
        "total_bytes": disk.total,
        "used_bytes": disk.used,
        "free_bytes": disk.free,
    }


def _collect(resource: str) -> dict[str, Any]:
    if resource == "cpu":
        return cpu_info()
    if resource == "memory":
        return memory_info()
    if resource == "disk":
        return disk_info()
    return {"cpu": cpu_info(), "memory": memory_info(), "disk": disk_info()}


async def _run(context: ExecutionContext) -> Any:
    resource = str(context.inputs.get("resource", "all"))
    if resource in ("cpu", "memory"):
        return _collect(resource)  # reads of /proc: microseconds, never blocking
    # statvfs can block on a stuck file system: not on the event loop.
    return await asyncio.to_thread(_collect, resource)


SYSTEM_INFO = Executor(
    id="system_info_executor",
    run=_run,
    description="Reports CPU, memory or disk figures of the server's machine (psutil).",
    input_schema={
        "type": "object",
        "properties": {"resource": {"enum": list(RESOURCES), "default": "all"}},
        "additionalProperties": False,
    },
)
