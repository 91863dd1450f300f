"""The web console's speed in headless Chromium: runs the browser test
tests/browser/test_speed.py (a 10,001-task tree: its snapshot drawn, then every event of
the tree running; and the runs page following the same tree running) `--runs` times and
prints what each run recorded, then the medians.

    .venv/bin/python bench/console_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "build" / "artefacts" / "browser" / "speed.json"
RUNS_FIGURES = FIGURES.with_name("speed-runs.json")
"""The runs page's figures, printed with a `runs_` prefix."""
TEST = "tests/browser/test_speed.py"


def one_run() -> dict[str, float]:
    FIGURES.unlink(missing_ok=True)
    RUNS_FIGURES.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not FIGURES.exists() or not RUNS_FIGURES.exists():
        raise SystemExit(f"{TEST} failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, float] = json.loads(FIGURES.read_text())
    runs_page: dict[str, float] = json.loads(RUNS_FIGURES.read_text())
    figures.update({f"runs_{key}": value for key, value in runs_page.items()})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(max(1, args.runs))]
    keys = list(runs[0])
    for index, figures in enumerate(runs, 1):
        print(f"run {index}: " + ", ".join(f"{k} {figures[k]}" for k in keys))
    medians = {k: statistics.median(float(r[k]) for r in runs if r[k] is not None) for k in keys}
    print("median: " + ", ".join(f"{k} {v:g}" for k, v in medians.items()))


if __name__ == "__main__":
    main()
