"""taskgrove benchmark: tree throughput (polled and watched), event latency, watcher fan-out
and CreateTaskTree latency against a real server, on SQLite and (when reachable) PostgreSQL.

Every scenario starts its own `taskgrove serve` subprocess on 127.0.0.1 with a fresh
database (a new SQLite file, or a new PostgreSQL database dropped afterwards), so numbers
are comparable. See bench/README.md for the method and the layout: the scenarios are in
`scenarios/`, the command line, tables and JSON in `runner.py`.

    .venv/bin/python bench/run.py [--quick | --sizes 1000,10000] [--shapes flat,chain] [--no-pg]
"""

from __future__ import annotations

import sys

# Run as `python bench/run.py`: Python puts bench/ first on sys.path, so the bench's
# modules (runner, scenarios, harness, ...) import as top-level modules, no path edits.
from runner import main

if __name__ == "__main__":
    sys.exit(main())
