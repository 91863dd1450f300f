"""Output helpers: JSON forms of SDK models, consoles, plain tables and short formats."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from rich.console import Console

from taskgrove._models import Task, TaskEvent


def to_jsonable(value: Any) -> Any:
    """SDK models (dataclasses), datetimes, durations (seconds) and containers as plain
    JSON values. Iterative: any depth of nesting (a parent chain 1,000 deep) converts."""
    top: list[Any] = [None]
    # (value to convert, the container to put it in, its key or index there)
    pending: list[tuple[Any, Any, Any]] = [(value, top, 0)]
    while pending:
        source, target, key = pending.pop()
        items: dict[str, Any]
        if dataclasses.is_dataclass(source) and not isinstance(source, type):
            items = {item.name: getattr(source, item.name) for item in dataclasses.fields(source)}
        elif isinstance(source, datetime):
            target[key] = source.isoformat()
            continue
        elif isinstance(source, timedelta):
            target[key] = source.total_seconds()
            continue
        elif isinstance(source, Mapping):
            items = {str(name): item for name, item in source.items()}
        elif isinstance(source, list | tuple):
            converted_list: list[Any] = [None] * len(source)
            target[key] = converted_list
            pending.extend((item, converted_list, index) for index, item in enumerate(source))
            continue
        else:
            target[key] = source
            continue
        converted: dict[str, Any] = dict.fromkeys(items)
        target[key] = converted
        pending.extend((item, converted, name) for name, item in items.items())
    return top[0]


def task_json(task: Task) -> dict[str, Any]:
    """Every field of a task, times as ISO 8601 strings."""
    data: dict[str, Any] = to_jsonable(task)
    data["is_group"] = task.is_group
    return data


def event_json(event: TaskEvent) -> dict[str, Any]:
    data: dict[str, Any] = to_jsonable(event)
    return data


@dataclasses.dataclass(slots=True)
class _Open:
    """A JSON object or array being written: its remaining (key, value) entries."""

    entries: Iterator[tuple[str | None, Any]]
    close: str
    first: bool = True


_encode_string = json.encoder.encode_basestring
_encode_other = json.JSONEncoder(ensure_ascii=False).encode


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _encode_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    return _encode_other(value)  # floats (NaN, Infinity as json writes them), {} and []


def encode(value: Any, *, indent: int | None = None) -> str:
    """`json.dumps(value, indent=indent, ensure_ascii=False)` of plain JSON values (what
    `to_jsonable` returns), written without recursion: nesting of any depth encodes."""
    newline, pad, comma = ("", "", ", ") if indent is None else ("\n", " " * indent, ",")
    parts: list[str] = []
    append = parts.append
    stack: list[_Open] = []
    current = value
    while True:
        if isinstance(current, dict) and current:
            append("{")
            stack.append(_Open(iter(current.items()), "}"))
        elif isinstance(current, list) and current:
            append("[")
            stack.append(_Open(zip(itertools.repeat(None), current), "]"))
        else:
            append(_scalar(current))
        while stack:
            top = stack[-1]
            entry = next(top.entries, None)
            if entry is None:
                stack.pop()
                append(newline + pad * len(stack) + top.close)
                continue
            key, current = entry
            append(("" if top.first else comma) + newline + pad * len(stack))
            top.first = False
            if key is not None:
                append(_encode_string(key) + ": ")
            break
        else:
            return "".join(parts)


def dumps(value: Any, *, indent: int | None = None) -> str:
    plain = to_jsonable(value)
    try:  # the C encoder, unless the nesting is deeper than Python's recursion allows
        return json.dumps(plain, indent=indent, ensure_ascii=False)
    except RecursionError:
        return encode(plain, indent=indent)


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
