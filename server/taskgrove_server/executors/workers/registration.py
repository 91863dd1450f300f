"""Checking a worker's registration before anything of it is registered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from taskgrove.domain import reasons

from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.executors.workers.messages import WorkerSpec

MAX_NAME = 100
MAX_SLOTS = 10_000
MAX_EXECUTORS = 1_000
MAX_LABELS = 64
MAX_LABEL_VALUE = 1_000


def _text_problem(value: str, limit: int) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"at most {limit} characters"
    if "\x00" in value or not value.isprintable():
        return "must be printable text"
    return None


def check_registration(spec: WorkerSpec) -> None:
    """Raises INVALID_ARGUMENT / INVALID_REGISTRATION naming every bad field."""
    bad: list[tuple[str, str]] = []
    for name, value in (("worker_id", spec.worker_id), ("name", spec.name)):
        if problem := _text_problem(value, MAX_NAME):
            bad.append((f"register.{name}", problem))
    if not 1 <= spec.slots <= MAX_SLOTS:
        bad.append(("register.slots", f"must be 1-{MAX_SLOTS}, not {spec.slots}"))
    if len(spec.labels) > MAX_LABELS:
        bad.append(("register.labels", f"at most {MAX_LABELS} labels"))
    for key, value in spec.labels.items():
        if (problem := _text_problem(key, MAX_NAME)) or len(value) > MAX_LABEL_VALUE:
            bad.append((f"register.labels[{key[:MAX_NAME]!r}]", problem or "value too long"))
    if not spec.executors:
        bad.append(("register.executors", "a worker serves at least one executor"))
    if len(spec.executors) > MAX_EXECUTORS:
        bad.append(("register.executors", f"at most {MAX_EXECUTORS} executors"))
    seen: set[str] = set()
    for index, executor in enumerate(spec.executors):
        where = f"register.executors[{index}]"
        if problem := _text_problem(executor.id, MAX_NAME):
            bad.append((f"{where}.id", problem))
        elif executor.id in seen:
            bad.append((f"{where}.id", f"{executor.id!r} is listed twice"))
        seen.add(executor.id)
        if problem := schema_problem(executor.input_schema):
            bad.append((f"{where}.input_schema", problem))
    if bad:
        raise invalid(
            [FieldViolation(path, text, reasons.INVALID_REGISTRATION) for path, text in bad[:20]],
            total=len(bad) if len(bad) > 20 else 0,
        )


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a JSON schema its inputs can be checked against, or None."""
    try:
        validator = jsonschema.validators.validator_for(dict(schema))
        validator.check_schema(dict(schema))
    except jsonschema.SchemaError as error:
        return f"not a JSON schema: {error.message}"[:500]
    except Exception as error:  # an unknown $schema, a bad reference...
        return f"not a JSON schema: {error}"[:500]
    return None
