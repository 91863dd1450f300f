"""Acceptance: `pip install taskgrove` (no extra) is the SDK and the client CLI only.

A fresh venv (made with this interpreter) gets `pip install <a copy of the checkout>`,
non-editable and from a copy so that the build's `build/` and `*.egg-info` stay out of the
working tree. In it: `taskgrove` imports with its SDK, `taskgrove_server` refuses with the
`taskgrove[server]` hint, none of the server's dependencies are installed, and
`taskgrove serve` exits 2 with the one-line hint. Against a real server started from the
tests' own environment (which has the server), the venv's python runs tutorial parts 2 and
7 and the venv's `taskgrove` runs client commands.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.processes import Finished
from test_tutorial import check_part2_simple_tree, check_part7_operations, run_ok

if TYPE_CHECKING:
    from taskgrove_server.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]  # the directory holding pyproject.toml
EXAMPLES = ROOT / "examples"
VENV_TIMEOUT = 120.0
INSTALL_TIMEOUT = 300.0
COMMAND_TIMEOUT = 60.0
SERVER_HINT = "error: taskgrove serve needs the server: pip install 'taskgrove[server]'\n"

# Making the venv and installing into it comes first (once per module) and is the slow part.
pytestmark = [pytest.mark.soak, pytest.mark.timeout(VENV_TIMEOUT + INSTALL_TIMEOUT + 120)]

# Not copied into the build's source: VCS data, venvs, caches and earlier build artefacts.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "node_modules",
)

# What the subprocesses of the venv must not inherit from the tests' environment: above
# all PYTHONPATH, which may point at the checkout's `client` and `server`.
NOT_INHERITED = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "COLUMNS"}


def requirement_name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement ("sqlalchemy[asyncio]>=2" -> ...)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return match.group(0)


def project_requirements() -> tuple[list[str], list[str]]:
    """The names of the base dependencies and of the `server` extra's, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = [requirement_name(r) for r in project["dependencies"]]
    server = [requirement_name(r) for r in project["optional-dependencies"]["server"]]
    return base, server


@dataclass(frozen=True)
class SlimVenv:
    """A venv holding `pip install <checkout>`, and how to run its programs."""

    path: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def taskgrove(self) -> str:
        return str(self.path / "bin" / "taskgrove")

    def run(self, *argv: str, timeout: float = COMMAND_TIMEOUT) -> Finished:
        """`argv` run to its end (bounded) from the venv's directory, not the checkout."""
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.path.parent,
            stdin=subprocess.DEVNULL,
        )
        return Finished(done.returncode, done.stdout, done.stderr)


def venv_env(venv: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    path = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return {**env, "PATH": path, "PYTHONNOUSERSITE": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def slim_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlimVenv]:
    base = tmp_path_factory.mktemp("slim-install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    path = base / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(path)],
        capture_output=True,
        text=True,
        timeout=VENV_TIMEOUT,
        cwd=base,
    )
    assert made.returncode == 0, Finished(made.returncode, made.stdout, made.stderr).explain()
    venv = SlimVenv(path, venv_env(path))
    installed = venv.run(
        venv.python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-input",
        "--disable-pip-version-check",
        str(source),  # a path (not a bare name, which pip would look up on an index)
        timeout=INSTALL_TIMEOUT,
    )
    assert installed.returncode == 0, installed.explain()
    yield venv


# Run by the venv's python: what it can import and what is installed, as JSON.
PROBE = """
import importlib, importlib.metadata, importlib.util, json, pkgutil, sys

base, server = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None

import taskgrove

facts = {
    "taskgrove_file": taskgrove.__file__,
    "sdk": sorted(name for name in taskgrove.__all__ if hasattr(taskgrove, name)),
    "module_errors": {},
    "versions": {name: version(name) for name in ["taskgrove", *base, *server]},
    "sqlalchemy_spec": importlib.util.find_spec("sqlalchemy") is not None,
}
for module in pkgutil.walk_packages(taskgrove.__path__, "taskgrove."):
    try:
        importlib.import_module(module.name)
    except Exception as error:
        facts["module_errors"][module.name] = repr(error)
try:
    import taskgrove_server
except ImportError as error:
    facts["server_error"] = [type(error).__name__, str(error)]
else:
    facts["server_error"] = None
print(json.dumps(facts))
"""


def test_slim_install_has_the_sdk_and_not_the_server(slim_venv: SlimVenv) -> None:
    base, server = project_requirements()
    probe = slim_venv.run(slim_venv.python, "-c", PROBE, json.dumps(base), json.dumps(server))
    assert probe.returncode == 0, probe.explain()
    facts: dict[str, Any] = json.loads(probe.stdout)

    # The installed package (not the checkout's client/), with its SDK; every module of it
    # (the CLI's included) imports with the base dependencies alone.
    installed = Path(facts["taskgrove_file"]).resolve()
    assert installed.is_relative_to(slim_venv.path.resolve()), facts
    sdk = {"AsyncClient", "TaskManager", "TaskTreeNode", "Task", "create_session", "statuses"}
    assert sdk <= set(facts["sdk"]), facts["sdk"]
    assert facts["module_errors"] == {}

    # The server package is there but refuses to load, naming the extra.
    kind, message = facts["server_error"]
    assert kind == "ImportError", facts["server_error"]
    assert "pip install 'taskgrove[server]'" in message, message

    # The base dependencies are installed; none of the server's.
    versions = facts["versions"]
    assert versions["taskgrove"], versions
    assert all(versions[name] for name in base), versions
    assert {name: versions[name] for name in server} == dict.fromkeys(server), versions
    assert not facts["sqlalchemy_spec"]

    check = slim_venv.run(slim_venv.python, "-m", "pip", "check", "--disable-pip-version-check")
    assert check.returncode == 0, check.explain()


def test_serve_without_the_server_prints_the_hint_and_exits_2(slim_venv: SlimVenv) -> None:
    for argv in (["serve"], ["serve", "--address", "127.0.0.1:0", "--db", "sqlite+aiosqlite://"]):
        serve = slim_venv.run(slim_venv.taskgrove, *argv)
        assert serve.returncode == 2, serve.explain()
        assert serve.stderr == SERVER_HINT, serve.explain()
        assert serve.stdout == "", serve.explain()


# Each part on its own server: its checks expect the tutorial user's only tree.
TUTORIAL_PARTS = {
    "part2_simple_tree.py": check_part2_simple_tree,
    "part7_operations.py": check_part7_operations,
}


@pytest.mark.parametrize("script", list(TUTORIAL_PARTS))
async def test_tutorial_runs_from_the_slim_install(
    slim_venv: SlimVenv, server_process: ServerProcess, script: str
) -> None:
    address = server_process.address
    run = await run_ok(script, address, slim_venv.python, slim_venv.env)
    await TUTORIAL_PARTS[script](run, address)


def test_client_cli_runs_from_the_slim_install(
    slim_venv: SlimVenv, server_process: ServerProcess
) -> None:
    address = server_process.address
    taskgrove = slim_venv.taskgrove

    usage = slim_venv.run(taskgrove, "--help")
    assert usage.returncode == 0, usage.explain()
    for command in ("serve", "run", "watch", "tree", "ls", "executors"):
        assert command in usage.stdout, usage.explain()

    executors = slim_venv.run(taskgrove, "--address", address, "executors")
    assert executors.returncode == 0, executors.explain()
    assert "system_info_executor" in executors.stdout, executors.explain()

    # `run` reads YAML and prints with rich; `tree` renders with rich.
    report = slim_venv.run(
        taskgrove, "--address", address, "run", str(EXAMPLES / "system_report.yaml"), "--no-live"
    )
    assert report.returncode == 0, report.explain()
    assert "system_report: 4 tasks (4 completed)" in report.stdout, report.explain()
    root = re.search(r"^root (\S+)$", report.stdout, re.MULTILINE)
    assert root, report.explain()
    tree = slim_venv.run(taskgrove, "--address", address, "tree", root.group(1))
    assert tree.returncode == 0, tree.explain()
    for name in ("system_report", "cpu", "memory", "disk", "report"):
        assert name in tree.stdout, tree.explain()
