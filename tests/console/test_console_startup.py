"""When the web console is served: `taskgrove serve` on by default (best effort), an asked-for
address that cannot be served refused in one line, the exposure rules, `--http off`."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskgrove._cli import build_parser
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.cli import config_from
from taskgrove_server.config import DEFAULT_HTTP_ADDRESS, ConfigError, ServerConfig
from taskgrove_server.testing import sqlite_url


def serve_args(*argv: str) -> ServerConfig:
    return config_from(build_parser().parse_args(["serve", *argv]))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_defaults_to_a_best_effort_console_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TASKGROVE_HTTP", raising=False)
    config = serve_args()
    assert (config.http_address, config.http_optional) == (DEFAULT_HTTP_ADDRESS, True)
    asked = serve_args("--http", "127.0.0.1:9000")
    assert (asked.http_address, asked.http_optional) == ("127.0.0.1:9000", False)
    assert not serve_args("--http", "off").console_enabled
    monkeypatch.setenv("TASKGROVE_HTTP", "127.0.0.1:9001")
    assert (serve_args().http_address, serve_args().http_optional) == ("127.0.0.1:9001", False)
    # Made in code (tests, embedding): no console unless asked for.
    assert not ServerConfig().console_enabled


async def test_a_default_console_whose_port_is_taken_is_skipped_with_a_warning(
    busy_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(
        address="127.0.0.1:0",
        db_url=sqlite_url(tmp_path / "tg.db"),
        http_address=f"127.0.0.1:{busy_port}",
        http_optional=True,
    )
    server = TaskgroveServer(config)
    with caplog.at_level(logging.WARNING):
        await server.start()
    try:
        assert server.console is None
        assert any("no web console" in r.getMessage() for r in caplog.records)
    finally:
        await server.stop(grace=1)


def test_an_asked_for_console_on_a_taken_port_is_refused_in_one_line(
    busy_port: int, tmp_path: Path
) -> None:
    env = {**os.environ, "TASKGROVE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0"]
    command += ["--db", sqlite_url(tmp_path / "tg.db"), "--http", f"127.0.0.1:{busy_port}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: cannot serve the web console on") and "--http" in line


def test_serve_prints_the_console_url(tmp_path: Path) -> None:
    env = {**os.environ, "TASKGROVE_LOG_LEVEL": "WARNING", "TASKGROVE_HTTP": "127.0.0.1:0"}
    command = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0"]
    command += ["--db", sqlite_url(tmp_path / "tg.db")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert "serving on 127.0.0.1:" in process.stdout.readline()
        assert process.stdout.readline().startswith("taskgrove web console on http://127.0.0.1:")
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"http_address": "0.0.0.0:0"}, "plain HTTP"),
        ({"http_address": "nonsense"}, "HOST:PORT"),
        ({"http_address": "127.0.0.1:0", "tls_client_ca_file": "ca.pem"}, "mutual TLS"),
    ],
)
def test_a_console_the_rules_refuse_stops_the_start(
    fields: dict[str, str], refusal: str, tmp_path: Path
) -> None:
    config = ServerConfig(address="127.0.0.1:0", db_url=sqlite_url(tmp_path / "tg.db"), **fields)
    with pytest.raises(ConfigError, match=refusal):
        TaskgroveServer(config)
