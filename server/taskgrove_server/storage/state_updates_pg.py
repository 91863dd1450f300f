"""PostgreSQL: a batch's guarded state changes in one statement that says which applied.

asyncpg's executemany reports no row count (-1), so a change refused by its status guard
went unnoticed there, and its events were stored. Here the changes travel as arrays
(`unnest`) in one UPDATE ... RETURNING, which names the tasks it changed: one round trip
however large the batch, and an exact answer (a batch of one or two tasks, a chain's
usual commit, takes a plain UPDATE ... RETURNING per task instead: cheaper there).

An UPDATE changes a row at most once, so the changes of one task that follow each other
(each expects the status the previous one set: a claim, then the outcome) are folded
into one: the first one's guard, the last one's values, the version raised by their
number. Such a run applies whole or not at all. A task whose changes do not follow each
other (rare) takes one more statement per break.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from taskgrove_server.storage.bulk import dumps
from taskgrove_server.storage.records import StateChange

# Driver SQL ($n: asyncpg's parameters), without SQLAlchemy's statement layer (~0.1 ms a
# commit, which a chain's one-task commits feel).
_SET = """
    status = $3, execution_requested = $4, attempt = $5, result = $6::json,
    error = $7::json, progress = $8, progress_message = $9, started_us = $10,
    ended_us = $11, updated_us = $12, version = t.version + $13
"""
# One task: a plain guarded UPDATE costs what the executemany did.
_UPDATE_ONE = f"UPDATE tasks AS t SET {_SET} WHERE t.id = $1 AND t.status = $2 RETURNING t.id"
# Several: their values as arrays, one round trip however many.
_UPDATE_MANY = f"""
    UPDATE tasks AS t SET {_SET.replace("$", "v.c")}
    FROM unnest(
        $1::varchar[], $2::varchar[], $3::varchar[], $4::boolean[], $5::integer[],
        $6::text[], $7::text[], $8::float8[], $9::text[], $10::bigint[], $11::bigint[],
        $12::bigint[], $13::integer[]
    ) AS v(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13)
    WHERE t.id = v.c1 AND t.status = v.c2
    RETURNING t.id
"""
_FEW = 2
"""Up to this many tasks, one plain UPDATE each (pipelined by nothing, but each is the
cheapest statement); beyond, the array statement."""

_Run = list[tuple[int, StateChange]]
"""Consecutive changes of one task, each expecting the status the previous one set,
with the index of the write each came from."""


def _runs(updates: Sequence[tuple[int, StateChange]]) -> list[list[_Run]]:
    """Rounds of runs: the i-th run of every task goes in round i (one row per task)."""
    per_task: dict[str, list[_Run]] = {}
    for index, change in updates:
        runs = per_task.setdefault(change.task_id, [])
        if runs and runs[-1][-1][1].status == change.expected_status:
            runs[-1].append((index, change))
        else:
            runs.append([(index, change)])
    rounds: list[list[_Run]] = []
    for runs in per_task.values():
        for number, run in enumerate(runs):
            if number == len(rounds):
                rounds.append([])
            rounds[number].append(run)
    return rounds


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _row(run: _Run) -> tuple[Any, ...]:
    first, last = run[0][1], run[-1][1]
    return (
        last.task_id, first.expected_status, last.status, last.execution_requested,
        last.attempt, _json(last.result), _json(last.error), last.progress,
        last.progress_message, last.started_us, last.ended_us, last.updated_us, len(run),
    )  # fmt: skip


def _changed(conn: Connection, runs: list[_Run]) -> set[str]:
    """The ids of the tasks whose run applied."""
    rows = [_row(run) for run in runs]
    if len(rows) <= _FEW:
        changed = (conn.exec_driver_sql(_UPDATE_ONE, row).scalar() for row in rows)
        return {str(task_id) for task_id in changed if task_id is not None}
    columns = tuple(list(column) for column in zip(*rows, strict=True))
    return set(conn.exec_driver_sql(_UPDATE_MANY, columns).scalars())


def update_states(conn: Connection, updates: Sequence[tuple[int, StateChange]]) -> set[int]:
    """Apply the changes (write index, change) in order; returns the indexes of the
    writes with a change that did not apply."""
    rejected: set[int] = set()
    for runs in _runs(updates):
        changed = _changed(conn, runs)
        for run in runs:
            if run[0][1].task_id not in changed:
                rejected.update(index for index, _ in run)
    return rejected
