"""The executor registry: built-ins, entry points, schema validation of inputs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskgrove_server.executors import Executor, ExecutorRegistry

PLUGIN = """
from taskgrove_server.executors import Executor

async def _run(context):
    return {"echo": dict(context.inputs)}

ECHO = Executor(id="echo_executor", run=_run, description="echoes",
                input_schema={"type": "object", "properties": {"x": {"type": "integer"}}})

def make():
    return Executor(id="made_executor", run=_run)

NOT_AN_EXECUTOR = 42
"""


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> Iterator[None]:
    """An installed-looking distribution declaring `taskgrove.executors` entry points."""
    (tmp_path / "tg_echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "tg_echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tg-echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[taskgrove.executors]\n"
        "echo = tg_echo_plugin:ECHO\n"
        "made = tg_echo_plugin:make\n"
        "broken = tg_echo_plugin:NOT_AN_EXECUTOR\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tg_echo_plugin", None)


def test_builtins_are_registered() -> None:
    registry = ExecutorRegistry.default(load_entry_points=False)
    ids = [executor.id for executor in registry]
    assert ids == ["aggregate_results_executor", "sleep_executor", "system_info_executor"]
    assert "command_executor" not in registry  # disabled without an allow-list


def test_command_executor_only_with_an_allow_list() -> None:
    registry = ExecutorRegistry.default(load_entry_points=False, allowed_commands=["echo"])
    assert "command_executor" in registry
    assert registry.input_errors("command_executor", {"argv": ["echo", "hi"]}) == []
    assert registry.input_errors("command_executor", {"argv": ["rm", "-rf", "/"]})
    assert registry.input_errors("command_executor", {"argv": []})


@pytest.mark.usefixtures("plugin_on_path")
def test_entry_points_register_executors_and_skip_foreign_objects() -> None:
    registry = ExecutorRegistry.default()
    assert "echo_executor" in registry  # an Executor object
    assert "made_executor" in registry  # a factory returning one
    assert registry.input_errors("echo_executor", {"x": 3}) == []
    assert registry.input_errors("echo_executor", {"x": "three"})


def test_a_duplicate_id_is_refused() -> None:
    registry = ExecutorRegistry.default(load_entry_points=False)
    sleep = registry.get("sleep_executor")
    assert sleep is not None
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(sleep)


def test_system_info_inputs_are_checked() -> None:
    registry = ExecutorRegistry.default(load_entry_points=False)
    assert registry.input_errors("system_info_executor", {"resource": "cpu"}) == []
    errors = registry.input_errors("system_info_executor", {"resource": "gpu"})
    assert errors and "gpu" in errors[0]


async def _never_run(context: object) -> None:
    raise AssertionError("not run here")


def _remote(schema: dict[str, object]) -> Executor:
    return Executor(id="resize", run=_never_run, input_schema=schema, remote=True)  # type: ignore[arg-type]


def test_inputs_checked_again_when_a_worker_brings_a_new_schema() -> None:
    registry = ExecutorRegistry()
    registry.register_remote(_remote({"type": "object"}))
    inputs = {"width": "wide"}
    assert registry.input_errors("resize", inputs) == []
    assert registry.input_errors("resize", dict(inputs)) == []  # the same verdict again
    strict = {"type": "object", "properties": {"width": {"type": "integer"}}}
    registry.register_remote(_remote(strict))
    errors = registry.input_errors("resize", inputs)
    assert errors == ["width: 'wide' is not of type 'integer'"]
    errors.append("changed by the caller")
    assert registry.input_errors("resize", inputs) == ["width: 'wide' is not of type 'integer'"]


def test_verdicts_follow_the_values_not_their_order_or_spelling() -> None:
    registry = ExecutorRegistry.default(load_entry_points=False)
    assert registry.input_errors("sleep_executor", {"seconds": 0.5}) == []
    assert registry.input_errors("sleep_executor", {"seconds": -1.0})
    assert registry.input_errors("sleep_executor", {"seconds": "0.5"})
