"""The peers table: per shape and size, one row per system (and per Prefect timing), the
median of the runs that finished, tasks/s, and the ratios to taskgrove's tutorial and bulk
paths (a system's median / taskgrove's: 30 = 30 times as long)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from harness import OK, num
from peer_runs import PeerRun

TUTORIAL, BULK, PREFECT = "taskgrove-tutorial", "taskgrove-bulk", "prefect"
CELERY_1S, CELERY_10MS = "celery-1s", "celery-10ms"
SKIPPED = "SKIPPED"
"""A repeat left out because an earlier repeat of the same system and size timed out."""
ROWS = (
    ("taskgrove tutorial", TUTORIAL, "seconds"),
    ("taskgrove bulk", BULK, "seconds"),
    ("prefect flow return", PREFECT, "seconds"),
    ("prefect persisted", PREFECT, "persisted_seconds"),
    ("celery 1 s polling", CELERY_1S, "seconds"),
    ("celery 10 ms polling", CELERY_10MS, "seconds"),
)
"""(label, system, PeerRun attribute): Prefect's one run gives two rows."""


def medians(runs: Sequence[PeerRun]) -> list[dict[str, Any]]:
    """One entry per shape, size and table row: the median of the runs that finished."""
    out: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((run.shape, run.tasks) for run in runs))
    for shape, tasks in keys:
        base: dict[str, float | None] = {}
        rows: list[dict[str, Any]] = []
        for label, system, attribute in ROWS:
            mine = [r for r in runs if (r.shape, r.tasks, r.system) == (shape, tasks, system)]
            if not mine:
                continue
            values = [getattr(r, attribute) for r in mine if r.outcome == OK]
            values = [value for value in values if value is not None]
            median = statistics.median(values) if values else None
            if system in (TUTORIAL, BULK):
                base[system] = median
            outcomes = [r.outcome for r in mine if r.outcome not in (OK, SKIPPED)]
            rss = [r.service_peak_rss_mb for r in mine if r.service_peak_rss_mb]
            rows.append(
                {
                    "shape": shape,
                    "tasks": tasks,
                    "row": label,
                    "system": system,
                    "ok": len(values),
                    "runs": len(mine),
                    "median_seconds": median,
                    "tasks_per_s": tasks / median if median else None,
                    "not_ok": outcomes[0] if outcomes else ("-" if not values else ""),
                    "service_peak_rss_mb": max(rss) if rss else None,
                }
            )
        for row in rows:
            for system, key in ((TUTORIAL, "vs_tutorial"), (BULK, "vs_bulk")):
                reference, median = base.get(system), row["median_seconds"]
                row[key] = median / reference if median and reference else None
        out.extend(rows)
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'shape':<6} {'tasks':>6}  {'system':<21} {'ok':>4} {'median s':>9} {'tasks/s':>8} "
        f"{'/ tutorial':>10} {'/ bulk':>8} {'RSS MB':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        seconds = num(row["median_seconds"], 3) if row["median_seconds"] else row["not_ok"]
        lines.append(
            f"{row['shape']:<6} {row['tasks']:>6,}  {row['row']:<21} "
            f"{row['ok']}/{row['runs']:<2} {seconds:>9} {num(row['tasks_per_s'], 0):>8} "
            f"{num(row['vs_tutorial'], 2):>10} {num(row['vs_bulk'], 1):>8} "
            f"{num(row['service_peak_rss_mb'], 0):>7}"
        )
    return "\n".join(lines)
