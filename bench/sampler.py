"""A thread sampling the server process's resident memory (peak RSS) and its CPU time."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import psutil

MB = 1024 * 1024


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; keeps the peak.
    Also reads the kernel's own high-water mark (VmHWM) at the end, where available.
    With `children`, each sample is the sum over the process and its descendants (a
    service that forks workers); VmHWM and CPU stay the process's own."""

    def __init__(self, pid: int, interval: float = 0.01, *, children: bool = False) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._children = children
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_rss = 0
        self.last_rss = 0
        """RSS at the last sample (the end of what was measured)."""
        self.samples = 0
        self.hwm = 0
        self.cpu_seconds = 0.0
        self._cpu_start = 0.0

    def _sample(self) -> None:
        try:
            rss = self._process.memory_info().rss
            for child in self._process.children(recursive=True) if self._children else ():
                with contextlib.suppress(psutil.Error):  # a child may exit meanwhile
                    rss += child.memory_info().rss
            self.last_rss = rss
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
        except psutil.Error:
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def _read_hwm(self) -> int:
        try:
            status = Path(f"/proc/{self._process.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def __enter__(self) -> RssSampler:
        self._cpu_start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        with contextlib.suppress(psutil.Error):
            self.cpu_seconds = self._cpu() - self._cpu_start
        self.hwm = self._read_hwm()
