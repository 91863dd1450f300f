"""Executors the operator declares for workers (`--executors-file`): their tasks can be
created, and wait, before any worker serving them connects."""

from __future__ import annotations

import json
from pathlib import Path

from taskgrove_server.config import ConfigError
from taskgrove_server.executors.workers.messages import RemoteExecutorSpec
from taskgrove_server.executors.workers.registration import schema_problem


def load_declarations(path: str) -> list[RemoteExecutorSpec]:
    """The executors of a JSON file `[{"id", "description"?, "input_schema"?}]`; raises
    ConfigError naming the file and the entry."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"executors file {path}: {error}") from None
    if not isinstance(data, list):
        raise ConfigError(f"executors file {path}: expected a JSON list of executors")
    specs: list[RemoteExecutorSpec] = []
    for index, entry in enumerate(data):
        where = f"executors file {path}, entry {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise ConfigError(f"{where}: expected an object with a non-empty string `id`")
        schema = entry.get("input_schema", {"type": "object"})
        if not isinstance(schema, dict) or (problem := schema_problem(schema)):
            raise ConfigError(f"{where} ({entry['id']}): input_schema is {problem or 'no object'}")
        if any(spec.id == entry["id"] for spec in specs):
            raise ConfigError(f"{where}: {entry['id']!r} is declared twice")
        specs.append(RemoteExecutorSpec(entry["id"], str(entry.get("description", "")), schema))
    return specs
