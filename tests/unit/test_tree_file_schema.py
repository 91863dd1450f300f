"""docs/tree-file.schema.json, the published JSON Schema of tree files: valid, accepts the
examples, has the reader's keys, and rejects what the reader rejects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from taskgrove.cli import tree_file
from taskgrove.cli.tree_file import TreeFileError, flatten_tree

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "tree-file.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = sorted(
    path for path in (ROOT / "examples").iterdir() if path.suffix in (".json", ".yaml", ".yml")
)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_has_the_readers_keys() -> None:
    task = SCHEMA["$defs"]["task"]
    assert set(task["properties"]) == set(tree_file._KEYS)
    assert task["additionalProperties"] is False


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid_for_the_schema_and_the_reader(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert list(VALIDATOR.iter_errors(document)) == []
    flatten_tree(document)


def test_there_are_examples() -> None:
    assert {p.suffix for p in EXAMPLES} >= {".json", ".yaml"}


def depends(dependency: Any) -> dict[str, Any]:
    """A tree whose task `b` has this one dependency (on `a`)."""
    return {"name": "t", "children": [{"name": "a"}, {"name": "b", "dependencies": [dependency]}]}


REJECTED: list[tuple[str, Any]] = [
    ("a list at the top", [{"name": "a"}]),
    ("no name", {"children": [{"executor": "sleep_executor"}]}),
    ("an empty name", {"name": " "}),
    ("a key typo", {"name": "t", "children": [{"name": "a", "input": {}}]}),
    ("children not a list", {"name": "t", "children": {"name": "a"}}),
    ("inputs not a mapping", {"name": "t", "inputs": [1, 2]}),
    ("a priority that is no integer", {"name": "t", "priority": "high"}),
    ("a boolean as max_attempts", {"name": "t", "max_attempts": True}),
    ("a duration in words", {"name": "t", "timeout": "5 minutes"}),
    ("an unknown unit", {"name": "t", "retry_backoff": "2d"}),
    ("an empty id", {"name": "t", "id": ""}),
    ("an executor that is no string", {"name": "t", "executor": 3}),
    ("dependencies not a list", {"name": "t", "dependencies": "a"}),
    (
        "a dependency with both id and name",
        {
            "name": "t",
            "children": [{"name": "a"}, {"name": "b", "dependencies": [{"id": "a", "name": "a"}]}],
        },
    ),
    (
        "a dependency with an unknown key",
        {
            "name": "t",
            "children": [
                {"name": "a"},
                {"name": "b", "dependencies": [{"id": "a", "optional": True}]},
            ],
        },
    ),
    (
        "required that is no boolean",
        {
            "name": "t",
            "children": [
                {"name": "a"},
                {"name": "b", "dependencies": [{"id": "a", "required": "no"}]},
            ],
        },
    ),
    ("a dependency that is a number", {"name": "t", "dependencies": [3]}),
]


@pytest.mark.parametrize(("case", "document"), REJECTED, ids=[case for case, _ in REJECTED])
def test_the_schema_rejects_what_the_reader_rejects(case: str, document: Any) -> None:
    with pytest.raises(TreeFileError):
        flatten_tree(document)
    assert list(VALIDATOR.iter_errors(document)), f"the schema accepts {case}"


def test_the_schema_accepts_what_the_reader_accepts() -> None:
    document = {
        "name": "t",
        "user_id": "alice",
        "children": [
            {"id": "a", "name": "a", "executor": "sleep_executor", "inputs": {"seconds": 1}},
            {
                "name": "b",
                "executor": "aggregate_results_executor",
                "priority": 0,
                "max_attempts": 3,
                "retry_backoff": "500ms",
                "timeout": 2.5,
                "params": {"k": "v"},
                "dependencies": ["a", {"name": "a", "required": False}, "stored-task-id"],
            },
            {"name": "c", "children": None, "executor": None, "timeout": " 1 h "},
        ],
    }
    flatten_tree(document)
    assert list(VALIDATOR.iter_errors(document)) == []
