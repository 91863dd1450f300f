"""Bounds on plain JSON values that must travel as protobuf `Struct`/`Value` (no protobuf
here, so that the server's engine can check results with it)."""

from __future__ import annotations

from typing import Any, Final

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of objects and arrays accepted in a JSON value. Protobuf decodes at
most 100 levels of messages and a JSON level costs two or three, so every accepted value
can be sent back in a reply."""


def problem(value: Any) -> str | None:
    """Why `value` (as `json.loads` returns it) cannot travel as a protobuf Value: nested
    deeper than MAX_JSON_DEPTH, or an integer no double can hold. None if it can."""
    pending: list[tuple[Any, int]] = [(value, 0)]  # (value, containers around it)
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                return "an integer too large for a JSON number (a double)"
    return None
