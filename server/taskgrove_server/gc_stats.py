"""Counting the interpreter's garbage collections (TASKGROVE_GC_STATS=1; off by default).

A `gc.callbacks` hook adds up, per generation, how many collections ran and how long they
took; the server prints the totals as one line when it stops (`GcStats.line`), which the
benchmark reads from the server's output. The hook runs around every collection, so it
only does a clock read and a few additions.
"""

from __future__ import annotations

import gc
import time
from typing import Any

GENERATIONS = 3


class GcStats:
    def __init__(self) -> None:
        self.collections = [0] * GENERATIONS
        self.seconds = [0.0] * GENERATIONS
        self.max_seconds = [0.0] * GENERATIONS
        self.collected = [0] * GENERATIONS
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation: int = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.collected[generation] += info["collected"]
        if took > self.max_seconds[generation]:
            self.max_seconds[generation] = took

    def line(self) -> str:
        """`taskgrove gc stats: gen2_collections=N gen2_seconds=S ...`: every generation's
        count, total and longest seconds, objects freed and threshold now; the objects
        frozen now."""
        fields = []
        thresholds = gc.get_threshold()
        for generation in reversed(range(GENERATIONS)):
            fields += [
                f"gen{generation}_collections={self.collections[generation]}",
                f"gen{generation}_seconds={self.seconds[generation]:.4f}",
                f"gen{generation}_max_seconds={self.max_seconds[generation]:.4f}",
                f"gen{generation}_collected={self.collected[generation]}",
                f"gen{generation}_threshold={thresholds[generation]}",
            ]
        fields.append(f"frozen={gc.get_freeze_count()}")
        return "taskgrove gc stats: " + " ".join(fields)
