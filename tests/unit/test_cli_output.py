"""The CLI's JSON output: the same text as `json.dumps`, at any depth of nesting."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskgrove.cli.output import dumps, encode, to_jsonable

SCALARS: list[Any] = [None, True, False, 0, -3, 1.5, 1e100, "", 'é " \\ \n ☃']


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(SCALARS)
    if roll < 0.65:
        return {f"k{index}é": random_value(rng, depth + 1) for index in range(rng.randint(0, 4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def test_encode_writes_what_json_dumps_writes() -> None:
    rng = random.Random(7)
    for _ in range(500):
        value = random_value(rng)
        assert to_jsonable(value) == value
        for indent in (None, 0, 2):
            assert encode(value, indent=indent) == json.dumps(
                value, indent=indent, ensure_ascii=False
            )


@dataclass
class Model:
    name: str
    when: datetime
    took: timedelta
    tags: tuple[str, ...]
    extra: dict[Any, Any]


def test_models_times_and_durations_become_plain_values() -> None:
    model = Model("m", datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=1.5), ("a",), {1: []})
    assert json.loads(dumps({"model": model}, indent=2)) == {
        "model": {
            "name": "m",
            "when": "2026-01-01T00:00:00+00:00",
            "took": 1.5,
            "tags": ["a"],
            "extra": {"1": []},
        }
    }


def test_nesting_deeper_than_the_recursion_limit() -> None:
    top: dict[str, Any] = {"children": []}
    node = top
    for index in range(5000):
        child: dict[str, Any] = {"n": index, "children": []}
        node["children"].append(child)
        node = child
    text = dumps(top, indent=None)
    assert text.count("[") == 5001
    assert text.endswith('"n": 4999, "children": []' + "}]" * 5000 + "}")
    assert len(dumps(top, indent=1).splitlines()) > 15000


def test_attempts_past_max_attempts_say_they_came_from_retry() -> None:
    from taskgrove import Task
    from taskgrove.cli.commands import attempt_text

    def of(attempt: int, max_attempts: int) -> str:
        return attempt_text(
            Task(id="t", name="t", user_id="u", status="failed", executor="e",
                 attempt=attempt, max_attempts=max_attempts)
        )  # fmt: skip

    assert of(0, 2) == "none yet (2 allowed)"
    assert of(2, 2) == "2 of 2"
    assert of(3, 2) == "3 (2 allowed per run; 3 came from retry)"
    assert of(4, 2) == "4 (2 allowed per run; 3 to 4 came from retry)"
