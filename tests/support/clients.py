"""The TypeScript and Go clients, built for tests: their toolchains, builds and programs.

A toolchain that is missing skips the test that needs it, in one line, on a developer's
machine; where `TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1` (CI) it fails the test instead, so a
broken install can never pass as a skip. Builds run once per test session.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "client" / "typescript"
GO = ROOT / "client" / "go"
GO_IMPORT_PATH = "taskgrove.dev/go"
"""What `go_package` in protos/ makes `client/go` (GOPATH mode: a link under src/)."""
BUILD = ROOT / "build" / "clients"
BUILD_TIMEOUT_S = 600


def require(program: str, client: str) -> str:
    """The path of `program`, or skip (fail in CI) saying which client's tests did not run."""
    found = shutil.which(program)
    if found is not None:
        return found
    message = f"{program} not found: the {client} client's tests did not run"
    if os.environ.get("TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS") == "1":
        pytest.fail(message + " (TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1)")
    pytest.skip(message, allow_module_level=True)


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without its own TASKGROVE_* settings (a developer's
    TASKGROVE_TOKEN or CA file must not leak into a client under test), plus `settings`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("TASKGROVE_")}
    return {**kept, **settings}


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a build step; its output is the failure message when it fails."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@functools.cache
def _typescript_dist() -> Path:
    npm = shutil.which("npm")
    assert npm is not None
    if not (TYPESCRIPT / "node_modules").is_dir():
        run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], TYPESCRIPT)
    run([npm, "run", "--silent", "build"], TYPESCRIPT)
    return TYPESCRIPT / "dist"


def typescript_dist() -> Path:
    """`client/typescript/dist`, built (`npm ci` first when node_modules is missing)."""
    require("node", "TypeScript")
    require("npm", "TypeScript")
    return _typescript_dist()


def gopath() -> Path:
    """A GOPATH (under build/) with `client/go` linked in as its import path."""
    path = BUILD / "gopath"
    link = path / "src" / GO_IMPORT_PATH
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(GO)
    return path


def go_env() -> dict[str, str]:
    """GOPATH mode against Debian's Go sources (the only ones here); the build cache stays
    under build/ so that runs after the first are quick."""
    return {
        "GO111MODULE": "off",
        "GOPATH": f"{gopath()}:/usr/share/gocode",
        "GOCACHE": str(ROOT / "build" / "go-cache"),
        "GOFLAGS": "",
    }


@functools.cache
def _go_program(package: str) -> Path:
    go = shutil.which("go")
    assert go is not None
    env = go_env()
    out = BUILD / "bin" / package.rsplit("/", 1)[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    run([go, "build", "-o", str(out), f"{GO_IMPORT_PATH}/{package}"], gopath(), env)
    return out


def go_program(package: str) -> Path:
    """The binary of `client/go/<package>` (e.g. `examples/watch`), built."""
    require("go", "Go")
    return _go_program(package)
