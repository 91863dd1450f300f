"""Processes by PID, for tests of what commands start: bounded waits, never fixed sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil

from support.waiting import WAIT_S


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie is left."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until_gone(pid: int, limit_s: float = WAIT_S) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            if process_gone(pid):
                return
            await asyncio.sleep(0.02)


def read_text(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


async def read_pid(path: Path, limit_s: float = WAIT_S) -> int:
    """The PID a command wrote to `path`, once it is there."""
    async with asyncio.timeout(limit_s):
        while True:
            if text := read_text(path):
                return int(text)
            await asyncio.sleep(0.01)
