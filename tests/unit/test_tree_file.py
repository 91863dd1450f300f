"""Tree files: nested JSON/YAML trees flattened into `CreateTaskTree` requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from taskgrove.cli.tree_file import (
    TreeFileError,
    flatten_tree,
    load_tree_file,
    parse_document,
    parse_duration,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def by_ref(document: Any) -> dict[str, dict[str, Any]]:
    return {task.ref: task.fields for task in flatten_tree(document).tasks}


def test_nested_children_become_parent_links_in_pre_order() -> None:
    tree = flatten_tree(
        {
            "name": "root",
            "children": [
                {"name": "a", "children": [{"name": "a1"}, {"name": "a2"}]},
                {"name": "b"},
            ],
        }
    )
    assert [task.ref for task in tree.tasks] == ["root", "a", "a1", "a2", "b"]
    assert [task.location for task in tree.tasks] == [
        "",
        "children[0]",
        "children[0].children[0]",
        "children[0].children[1]",
        "children[1]",
    ]
    parents = {task.ref: task.fields.get("parent_id") for task in tree.tasks}
    assert parents == {"root": None, "a": "root", "a1": "a", "a2": "a", "b": "root"}
    assert tree.root.ref == "root"
    assert "children" not in tree.request()[0]


def test_dependencies_by_name_and_by_explicit_id() -> None:
    fields = by_ref(
        {
            "name": "root",
            "children": [
                {"name": "fetch data", "id": "fetch"},
                {"name": "parse", "executor": "sleep_executor"},
                {"name": "report", "dependencies": ["fetch", "parse"]},
                {"name": "again", "dependencies": [{"name": "fetch data"}, {"id": "fetch"}]},
            ],
        }
    )
    assert fields["report"]["dependencies"] == [{"id": "fetch"}, {"id": "parse"}]
    assert fields["again"]["dependencies"] == [{"id": "fetch"}, {"id": "fetch"}]
    assert fields["parse"]["executor"] == "sleep_executor"


def test_an_explicit_id_wins_over_another_task_s_name() -> None:
    fields = by_ref(
        {
            "name": "root",
            "children": [
                {"name": "x", "id": "first"},
                {"name": "other", "id": "x"},
                {"name": "user", "dependencies": ["x"]},
            ],
        }
    )
    assert fields["user"]["dependencies"] == [{"id": "x"}]
    assert fields["x"]["name"] == "other"


def test_duplicate_names_get_distinct_local_ids_and_are_ambiguous_dependencies() -> None:
    document = {
        "name": "root",
        "children": [{"name": "step"}, {"name": "step"}, {"name": "end", "dependencies": []}],
    }
    assert [task.ref for task in flatten_tree(document).tasks] == [
        "root",
        "step",
        "step#2",
        "end",
    ]
    document["children"][2]["dependencies"] = ["step"]
    with pytest.raises(TreeFileError, match="ambiguous") as caught:
        flatten_tree(document)
    assert caught.value.location == "children[2].dependencies[0]"


def test_generated_ids_avoid_explicit_ones() -> None:
    refs = [
        task.ref
        for task in flatten_tree(
            {"name": "root", "children": [{"name": "a"}, {"name": "b", "id": "a"}]}
        ).tasks
    ]
    assert refs == ["root", "a#2", "a"]


def test_unknown_dependency_is_passed_on_as_a_stored_task_id() -> None:
    fields = by_ref({"name": "root", "dependencies": ["01a2-stored-task"]})
    assert fields["root"]["dependencies"] == [{"id": "01a2-stored-task"}]
    with pytest.raises(TreeFileError, match="no task named"):
        flatten_tree({"name": "root", "dependencies": [{"name": "missing"}]})


def test_optional_dependencies_keep_required() -> None:
    fields = by_ref(
        {
            "name": "root",
            "children": [
                {"name": "a"},
                {"name": "b", "dependencies": [{"name": "a", "required": False}]},
            ],
        }
    )
    assert fields["b"]["dependencies"] == [{"id": "a", "required": False}]


def test_task_fields_are_passed_through_with_durations_in_seconds() -> None:
    fields = by_ref(
        {
            "name": "job",
            "user_id": "alice",
            "executor": "sleep_executor",
            "inputs": {"seconds": 1},
            "params": {"mode": "fast"},
            "priority": 0,
            "max_attempts": 3,
            "retry_backoff": "250ms",
            "timeout": "2m",
        }
    )["job"]
    assert fields == {
        "id": "job",
        "name": "job",
        "user_id": "alice",
        "executor": "sleep_executor",
        "inputs": {"seconds": 1},
        "params": {"mode": "fast"},
        "priority": 0,
        "max_attempts": 3,
        "retry_backoff": 0.25,
        "timeout": 120.0,
    }


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(5, 5.0), (0.5, 0.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0)],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("document", "message", "location"),
    [
        ([{"name": "a"}], "one task", ""),
        ({"children": []}, "`name` is required", ""),
        ({"name": "r", "children": [{"name": "a", "dependancies": []}]}, "did you mean", ""),
        ({"name": "r", "children": {"name": "a"}}, "`children` must be a list", ""),
        ({"name": "r", "children": ["a"]}, "must be a mapping", "children[0]"),
        ({"name": "r", "priority": "high"}, "`priority` must be an integer", ""),
        ({"name": "r", "priority": True}, "`priority` must be an integer", ""),
        ({"name": "r", "inputs": [1]}, "`inputs` must be a mapping", ""),
        ({"name": "r", "timeout": "soon"}, "duration", ""),
        ({"name": "r", "dependencies": "a"}, "must be a list", ""),
        ({"name": "r", "dependencies": [{"id": "a", "name": "a"}]}, "exactly one", ""),
        ({"name": "r", "dependencies": [{"id": "a", "required": "no"}]}, "true or false", ""),
        (
            {"name": "r", "children": [{"name": "a", "id": "r"}, {"name": "b", "id": "r"}]},
            "twice",
            "",
        ),
    ],
)
def test_invalid_documents_say_what_and_where(document: Any, message: str, location: str) -> None:
    with pytest.raises(TreeFileError, match=message) as caught:
        flatten_tree(document)
    if location:
        assert caught.value.location == location
    assert caught.value.reason == "INVALID_TREE_FILE"


def test_yaml_and_json_files(tmp_path: Path) -> None:
    document = {"name": "root", "children": [{"name": "a"}, {"name": "b", "dependencies": ["a"]}]}
    as_json = tmp_path / "tree.json"
    as_json.write_text(json.dumps(document))
    as_yaml = tmp_path / "tree.yaml"
    as_yaml.write_text("name: root\nchildren:\n  - name: a\n  - name: b\n    dependencies: [a]\n")
    assert load_tree_file(as_json).request() == load_tree_file(as_yaml).request()


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(TreeFileError, match="invalid JSON") as caught:
        parse_document('{"name": "a",\n  oops}', ".json")
    assert caught.value.location.startswith("line 2")
    with pytest.raises(TreeFileError, match="invalid YAML") as caught:
        parse_document("name: a\n  children: [\n", ".yaml")
    assert caught.value.location.startswith("line ")
    with pytest.raises(TreeFileError, match="cannot read"):
        load_tree_file(tmp_path / "missing.yaml")


def test_server_field_paths_are_described_with_the_task_in_the_file() -> None:
    tree = flatten_tree({"name": "root", "children": [{"name": "a"}, {"name": "b"}]})
    assert tree.describe_field("tasks[2].inputs") == "tasks[2].inputs ('b' at children[1])"
    assert tree.describe_field("tasks[0].name") == "tasks[0].name ('root' at top task)"
    assert tree.describe_field("tasks[9].name") == "tasks[9].name"
    assert tree.describe_field("request_id") == "request_id"


def test_the_examples_flatten() -> None:
    report = load_tree_file(EXAMPLES / "system_report.yaml")
    fields = {task.ref: task.fields for task in report.tasks}
    assert fields["report"]["dependencies"] == [{"id": "cpu"}, {"id": "memory"}, {"id": "disk"}]
    assert {fields[name]["inputs"]["resource"] for name in ("cpu", "memory", "disk")} == {
        "cpu",
        "memory",
        "disk",
    }
    pipeline = load_tree_file(EXAMPLES / "pipeline.json")
    join = next(task for task in pipeline.tasks if task.ref == "join")
    assert {"id": "currency", "required": False} in join.fields["dependencies"]
