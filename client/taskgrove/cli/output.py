"""Output helpers: JSON forms of SDK models, consoles, plain tables and short formats."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from rich.console import Console

from taskgrove._models import Task, TaskEvent


def to_jsonable(value: Any) -> Any:
    """SDK models (dataclasses), datetimes, durations (seconds) and containers as plain
    JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: to_jsonable(getattr(value, item.name)) for item in dataclasses.fields(value)
        }
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def task_json(task: Task) -> dict[str, Any]:
    """Every field of a task, times as ISO 8601 strings."""
    data: dict[str, Any] = to_jsonable(task)
    data["is_group"] = task.is_group
    return data


def event_json(event: TaskEvent) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(event)
    return data


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(value), indent=indent, ensure_ascii=False, sort_keys=False)


def print_json(value: Any, *, indent: int | None = 2, file: TextIO | None = None) -> None:
    print(dumps(value, indent=indent), file=file or sys.stdout, flush=True)


NON_TERMINAL_WIDTH = 120
"""Width of views written to a file or a pipe (unless $COLUMNS says otherwise)."""


class _Console(Console):
    """A rich console that lets a closed pipe (`taskgrove watch ID | head`) surface as
    BrokenPipeError, which the CLI turns into its own exit code (rich exits with 1)."""

    def on_broken_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise BrokenPipeError


def stdout_console(*, soft_wrap: bool | None = None) -> Console:
    """A console for standard output: colours only on a terminal; to a file or a pipe,
    lines are not wrapped and views are laid out on 120 columns."""
    terminal = sys.stdout.isatty()
    width = None if terminal or "COLUMNS" in os.environ else NON_TERMINAL_WIDTH
    wrap = not terminal if soft_wrap is None else soft_wrap
    return _Console(highlight=False, soft_wrap=wrap, width=width)


def short_id(task_id: str) -> str:
    """The last 8 characters of an id: task ids are UUIDv7, whose leading characters are
    a timestamp shared by every task created in the same minute."""
    return task_id[-8:] if len(task_id) > 8 else task_id


def format_duration(seconds: float) -> str:
    """`0.42s`, `12.3s`, `4m05s`, `2h03m`."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:.0f}%"


def format_time(moment: datetime | None) -> str:
    """Local wall-clock time with milliseconds, `-` when unknown."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%H:%M:%S.%f")[:-3]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain left-aligned columns separated by two spaces (pipe- and grep-friendly)."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[index]) for index, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
