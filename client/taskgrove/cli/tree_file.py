"""Tree files: a nested task tree in JSON or YAML, flattened for `CreateTaskTree`.

A tree file describes one top task; every task may have `children`::

    name: nightly                 # required on every task
    user_id: alice                # optional owner (the server's default otherwise)
    children:
      - name: fetch
        executor: sleep_executor  # optional: a task named after an executor runs it
        inputs: {seconds: 0.5}
        priority: 1               # 0 urgent .. 3 low (default 2)
        max_attempts: 3
        retry_backoff: 2s         # seconds, or a duration such as 500ms, 2s, 1m, 1h
        timeout: 5m
      - name: report
        id: report                # optional local id
        executor: aggregate_results_executor
        dependencies:
          - fetch                 # by local id, or by name when the name is unique
          - {name: fetch, required: false}   # or a mapping with `id` or `name`

A dependency names a task of the file by its explicit `id` first, then by its `name` (which
must then be unique in the file); anything else is passed on as the id of a task that is
already stored on the server. Tasks without an `id` get a local id derived from their name.
Keys are checked: an unknown key is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TREE_FILE_INVALID = "INVALID_TREE_FILE"
"""The reason printed for a file that cannot be turned into a request."""

_KEYS = frozenset(
    {
        "name",
        "id",
        "executor",
        "inputs",
        "params",
        "priority",
        "dependencies",
        "children",
        "max_attempts",
        "retry_backoff",
        "timeout",
        "user_id",
    }
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class TreeFileError(ValueError):
    """A tree file that cannot be read or flattened; `location` says where in the file."""

    def __init__(self, message: str, location: str = "", reason: str = TREE_FILE_INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.message}"


@dataclass(frozen=True, slots=True)
class FlatTask:
    """One task of a flattened tree: where it came from in the file, and its request."""

    ref: str
    """Local id in the request (explicit `id`, else derived from the name)."""
    location: str
    """Where the task is in the file, e.g. `children[1].children[0]` (`` for the top)."""
    fields: dict[str, Any]
    """Keyword arguments of `taskgrove.task_message` (what `create_task_tree` takes)."""

    @property
    def name(self) -> str:
        return str(self.fields["name"])


@dataclass(frozen=True, slots=True)
class FlatTree:
    """A tree file flattened into a `CreateTaskTree` request, parents before children."""

    tasks: list[FlatTask] = field(default_factory=list)

    @property
    def root(self) -> FlatTask:
        return self.tasks[0]

    def request(self) -> list[dict[str, Any]]:
        """The task dicts for `AsyncClient.create_task_tree`."""
        return [dict(task.fields) for task in self.tasks]

    def describe_field(self, field_path: str) -> str:
        """A server field path (`tasks[2].inputs`) with the task it names in the file."""
        match = re.match(r"^tasks\[(\d+)\]", field_path)
        if not match or int(match.group(1)) >= len(self.tasks):
            return field_path
        task = self.tasks[int(match.group(1))]
        where = task.location or "top task"
        return f"{field_path} ({task.name!r} at {where})"


# ---------------------------------------------------------------------- reading


def load_tree_file(path: str | Path) -> FlatTree:
    """Read and flatten a JSON or YAML tree file (`-` reads standard input)."""
    if str(path) == "-":
        text, suffix = sys.stdin.read(), ""
    else:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise TreeFileError(f"cannot read {file}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise TreeFileError(f"{file} is not UTF-8 text: {error.reason}") from None
        suffix = file.suffix.lower()
    return flatten_tree(parse_document(text, suffix))


def parse_document(text: str, suffix: str = "") -> Any:
    """Parse JSON (`.json`) or YAML (`.yaml`, `.yml`); anything else is tried as YAML, of
    which JSON is a subset."""
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise TreeFileError(
                f"invalid JSON: {error.msg}", f"line {error.lineno} column {error.colno}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise TreeFileError(f"invalid YAML: {problem}", where) from None


# ---------------------------------------------------------------------- flattening


@dataclass(slots=True)
class _Node:
    location: str
    raw: Mapping[str, Any]
    parent: _Node | None
    ref: str = ""


def flatten_tree(document: Any) -> FlatTree:
    """Turn a nested tree (mappings with `children`) into request tasks with local ids,
    `parent_id` links and dependencies resolved to local ids."""
    if not isinstance(document, Mapping):
        raise TreeFileError("a tree file holds one task (a mapping with `name`)")
    nodes = _collect(document)
    _assign_refs(nodes)
    by_id = {str(node.raw["id"]): node for node in nodes if "id" in node.raw}
    by_name: dict[str, list[_Node]] = {}
    for node in nodes:
        by_name.setdefault(str(node.raw["name"]), []).append(node)
    tasks = [FlatTask(node.ref, node.location, _fields(node, by_id, by_name)) for node in nodes]
    return FlatTree(tasks)


def _collect(document: Mapping[str, Any]) -> list[_Node]:
    """Every task of the file in pre-order (parents before children), keys checked."""
    nodes: list[_Node] = []
    stack: list[tuple[Any, str, _Node | None]] = [(document, "", None)]
    while stack:
        raw, location, parent = stack.pop()
        if not isinstance(raw, Mapping):
            raise TreeFileError("a task must be a mapping", location)
        _check_keys(raw, location)
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TreeFileError("`name` is required and must be a non-empty string", location)
        if "id" in raw and (not isinstance(raw["id"], str) or not raw["id"]):
            raise TreeFileError("`id` must be a non-empty string", location)
        node = _Node(location, raw, parent)
        nodes.append(node)
        children = raw.get("children", [])
        if children is None:
            children = []
        if not isinstance(children, list):
            raise TreeFileError("`children` must be a list", location)
        prefix = f"{location}." if location else ""
        for index in reversed(range(len(children))):
            stack.append((children[index], f"{prefix}children[{index}]", node))
    return nodes


def _check_keys(raw: Mapping[str, Any], location: str) -> None:
    for key in raw:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise TreeFileError(f"unknown key `{key}`{hint}", location)


def _assign_refs(nodes: list[_Node]) -> None:
    """Explicit ids stay; other tasks get their name, or `name#2`... when it is taken."""
    used: set[str] = set()
    for node in nodes:
        if "id" in node.raw:
            ref = str(node.raw["id"])
            if ref in used:
                raise TreeFileError(f"id {ref!r} is used twice", node.location)
            used.add(ref)
            node.ref = ref
    for node in nodes:
        if node.ref:
            continue
        base = str(node.raw["name"])
        ref, count = base, 1
        while ref in used:
            count += 1
            ref = f"{base}#{count}"
        used.add(ref)
        node.ref = ref


def _fields(
    node: _Node,
    by_id: Mapping[str, _Node],
    by_name: Mapping[str, Sequence[_Node]],
) -> dict[str, Any]:
    raw, location = node.raw, node.location
    fields: dict[str, Any] = {"id": node.ref, "name": raw["name"]}
    if node.parent is not None:
        fields["parent_id"] = node.parent.ref
    for key in ("executor", "user_id"):
        if key in raw and raw[key] is not None:
            if not isinstance(raw[key], str):
                raise TreeFileError(f"`{key}` must be a string", location)
            fields[key] = raw[key]
    for key in ("inputs", "params"):
        if key in raw and raw[key] is not None:
            if not isinstance(raw[key], Mapping):
                raise TreeFileError(f"`{key}` must be a mapping", location)
            fields[key] = dict(raw[key])
    for key in ("priority", "max_attempts"):
        if key in raw and raw[key] is not None:
            fields[key] = _integer(raw[key], key, location)
    for key in ("retry_backoff", "timeout"):
        if key in raw and raw[key] is not None:
            fields[key] = parse_duration(raw[key], key, location)
    dependencies = raw.get("dependencies")
    if dependencies is not None:
        if not isinstance(dependencies, list):
            raise TreeFileError("`dependencies` must be a list", location)
        fields["dependencies"] = [
            _dependency(entry, f"{location}.dependencies[{index}]".lstrip("."), by_id, by_name)
            for index, entry in enumerate(dependencies)
        ]
    return fields


def _integer(value: Any, key: str, location: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TreeFileError(f"`{key}` must be an integer", location)
    return value


def parse_duration(value: Any, key: str = "duration", location: str = "") -> float:
    """Seconds from a number or a string such as `500ms`, `2s`, `1.5m`, `1h`."""
    if isinstance(value, bool):
        raise TreeFileError(f"`{key}` must be a number of seconds or a duration", location)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise TreeFileError(f"`{key}` must be finite", location)
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise TreeFileError(
        f"`{key}` must be a number of seconds or a duration such as 500ms, 2s, 1m, 1h",
        location,
    )


def _dependency(
    entry: Any,
    location: str,
    by_id: Mapping[str, _Node],
    by_name: Mapping[str, Sequence[_Node]],
) -> dict[str, Any]:
    required: bool | None = None
    if isinstance(entry, str):
        ref = _resolve(entry, by_id, by_name, location)
    elif isinstance(entry, Mapping):
        unknown = set(entry) - {"id", "name", "required"}
        if unknown:
            raise TreeFileError(
                f"unknown key `{sorted(unknown)[0]}` (a dependency has `id` or `name`, "
                "and `required`)",
                location,
            )
        if ("id" in entry) == ("name" in entry):
            raise TreeFileError("a dependency has exactly one of `id` and `name`", location)
        if "required" in entry:
            if not isinstance(entry["required"], bool):
                raise TreeFileError("`required` must be true or false", location)
            required = entry["required"]
        if "id" in entry:
            if not isinstance(entry["id"], str) or not entry["id"]:
                raise TreeFileError("`id` must be a non-empty string", location)
            ref = entry["id"]
            ref = by_id[ref].ref if ref in by_id else ref
        else:
            if not isinstance(entry["name"], str) or not entry["name"]:
                raise TreeFileError("`name` must be a non-empty string", location)
            ref = _by_name(entry["name"], by_name, location, strict=True)
    else:
        raise TreeFileError("a dependency is a name, an id or a mapping", location)
    dependency: dict[str, Any] = {"id": ref}
    if required is not None:
        dependency["required"] = required
    return dependency


def _resolve(
    text: str, by_id: Mapping[str, _Node], by_name: Mapping[str, Sequence[_Node]], location: str
) -> str:
    """An explicit local id, else a unique name, else (unknown here) a stored task's id."""
    if text in by_id:
        return by_id[text].ref
    return _by_name(text, by_name, location, strict=False)


def _by_name(
    name: str, by_name: Mapping[str, Sequence[_Node]], location: str, *, strict: bool
) -> str:
    matches = by_name.get(name, ())
    if len(matches) > 1:
        places = ", ".join(node.location or "top task" for node in matches)
        raise TreeFileError(
            f"dependency {name!r} is ambiguous: {len(matches)} tasks have that name ({places}); "
            "give the one you mean an `id` and depend on that",
            location,
        )
    if matches:
        return matches[0].ref
    if strict:
        raise TreeFileError(f"no task named {name!r} in the file", location)
    return name
