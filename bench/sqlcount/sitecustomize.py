"""Counts the SQL a server process sends, for the replicas scenario (`scenarios/replicas.py`).

The scenario puts this folder first on the servers' PYTHONPATH with
`TASKGROVE_BENCH_SQL_COUNT=1`; Python imports `sitecustomize` at start-up. It registers
SQLAlchemy listeners on every `Engine` (an `AsyncEngine` runs one) and prints one line
when the process exits:

    taskgrove bench sql: at=exit statements=N executemany=M parameter_sets=P checkouts=K
        begin=B commit=C rollback=R select=.. insert=.. update=.. delete=.. other=..

and the same line (`at=usr2`) whenever it receives SIGUSR2, so the harness can take the
counts at the start of what it measures.

`statements` counts cursor executions (an `executemany`, which asyncpg pipelines, counts
once; `parameter_sets` counts its rows). `checkouts` counts connections taken from the
pool (the server's engine pre-pings each one). `begin`/`commit`/`rollback` are
SQLAlchemy's transaction events. The server's own LISTEN connection (plain asyncpg) is not counted.
Each count is one Python call per statement, well under a microsecond. Without the
variable nothing is registered.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections import Counter
from typing import Any

ENV = "TASKGROVE_BENCH_SQL_COUNT"
LINE = "taskgrove bench sql:"
KINDS = ("select", "insert", "update", "delete")
TEXTS_ENV = "TASKGROVE_BENCH_SQL_TEXTS"
"""With this set to 1 too, the exit line is followed by the most frequent statements since
the last SIGUSR2 (since start-up without one), one `taskgrove bench sql text: COUNT TEXT`
line each."""
TEXT_CHARS = 160
TEXTS_SHOWN = 25


def _install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    counts: Counter[str] = Counter()
    texts: Counter[str] | None = Counter() if os.environ.get(TEXTS_ENV) == "1" else None

    def before_cursor_execute(
        _conn: Any,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        counts["statements"] += 1
        if executemany:
            counts["executemany"] += 1
            counts["parameter_sets"] += len(parameters)
        head = statement.lstrip()[:6].lower()
        counts[head if head in KINDS else "other"] += 1
        if texts is not None:
            texts[" ".join(statement.split())[:TEXT_CHARS]] += 1

    def transaction(name: str) -> Any:
        def listener(_conn: Any) -> None:
            counts[name] += 1

        return listener

    def checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        counts["checkouts"] += 1  # with pool_pre_ping, each one is a ping first

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Pool, "checkout", checkout)
    for name in ("begin", "commit", "rollback"):
        event.listen(Engine, name, transaction(name))

    def report(at: str) -> None:
        keys = ("statements", "executemany", "parameter_sets", "checkouts")
        keys += ("begin", "commit", "rollback")
        fields = [f"{key}={counts[key]}" for key in (*keys, *KINDS, "other")]
        print(f"{LINE} at={at} {' '.join(fields)}", file=sys.stderr, flush=True)
        if texts is not None and at == "exit":
            for text, count in texts.most_common(TEXTS_SHOWN):
                print(f"taskgrove bench sql text: {count} {text}", file=sys.stderr, flush=True)

    def on_usr2(_signum: int, _frame: Any) -> None:
        report("usr2")
        if texts is not None:
            texts.clear()  # the statements listed at exit: those since the last SIGUSR2

    atexit.register(report, "exit")
    signal.signal(signal.SIGUSR2, on_usr2)


if os.environ.get(ENV) == "1":
    _install()
