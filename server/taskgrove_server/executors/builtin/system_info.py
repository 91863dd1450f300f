"""`system_info_executor`: real CPU, memory and disk figures of the server's machine."""

from __future__ import annotations

import asyncio
import platform
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


def cpu_info() -> dict[str, Any]:
    return {
        "cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "logical_cores": psutil.cpu_count(logical=True),
        "brand": _cpu_brand(),
        # A short real sample; blocking, so callers run it in a thread.
        "percent": psutil.cpu_percent(interval=0.1),
    }


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
