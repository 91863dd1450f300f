"""Configuration from the environment: the server's and the client's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskgrove import ClientConfig, TLSConfig
from taskgrove_server.config import ConfigError, ServerConfig


def test_every_server_field_reads_its_environment_variable() -> None:
    config = ServerConfig.from_env(
        {
            "TASKGROVE_ADDRESS": "127.0.0.1:6000",
            "TASKGROVE_DB": "sqlite+aiosqlite:////tmp/x.db",
            "TASKGROVE_MAX_CONCURRENCY": "8",
            "TASKGROVE_EXECUTOR_LIMITS": "sleep_executor=2, command_executor=1",
            "TASKGROVE_ALLOW_COMMANDS": "echo,true",
            "TASKGROVE_COMMAND_ENV": "GREETING,TZ",
            "TASKGROVE_COMMAND_CWD": "/srv/a,/srv/b",
            "TASKGROVE_COMMAND_USER": "builder",
            "TASKGROVE_EVENT_RETENTION_SECONDS": "60.5",
            "TASKGROVE_MAX_RESULT_BYTES": "1000",
            "TASKGROVE_MAX_WATCHERS": "3",
            "TASKGROVE_TLS_CERT": "/etc/tg/cert.pem",
            "TASKGROVE_TLS_KEY": "/etc/tg/key.pem",
            "TASKGROVE_TLS_CLIENT_CA": "/etc/tg/ca.pem",
            "TASKGROVE_INSECURE": "yes",
            "TASKGROVE_REFLECTION": "0",
        }
    )
    assert config.address == "127.0.0.1:6000"
    assert config.db_url == "sqlite+aiosqlite:////tmp/x.db"
    assert config.max_concurrency == 8
    assert config.executor_limits == {"sleep_executor": 2, "command_executor": 1}
    assert config.allowed_commands == ["echo", "true"]
    assert (config.command_env, config.command_cwd) == (["GREETING", "TZ"], ["/srv/a", "/srv/b"])
    assert config.command_user == "builder"
    assert config.event_retention_seconds == 60.5
    assert (config.max_result_bytes, config.max_watchers) == (1000, 3)
    assert (config.tls_cert_file, config.tls_key_file) == ("/etc/tg/cert.pem", "/etc/tg/key.pem")
    assert config.tls_client_ca_file == "/etc/tg/ca.pem"
    assert (config.insecure, config.reflection) == (True, False)
    assert ServerConfig.from_env({}) == ServerConfig()


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TASKGROVE_MAX_CONCURRENCY"):
        ServerConfig.from_env({"TASKGROVE_MAX_CONCURRENCY": "many"})


def test_serve_reports_a_bad_variable_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TASKGROVE_MAX_CONCURRENCY": "many"}
    command = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0"]
    command += ["--db", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: TASKGROVE_MAX_CONCURRENCY=many: 'many' is not a whole number; "
        "give a whole number >= 1 (default 256)"
    ]


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs its key"):
        TLSConfig(cert_file=tmp_path / "cert.pem")
    with pytest.raises(ValueError, match="needs its key"):
        TLSConfig(key_file=tmp_path / "key.pem")


def test_the_client_config_comes_from_arguments_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ADDRESS", "TOKEN", "CA_FILE", "CERT_FILE", "KEY_FILE"):
        monkeypatch.delenv(f"TASKGROVE_{name}", raising=False)
    assert ClientConfig.from_env() == ClientConfig()
    assert ClientConfig.from_env().address == "127.0.0.1:50051"
    monkeypatch.setenv("TASKGROVE_ADDRESS", "127.0.0.1:7000")
    monkeypatch.setenv("TASKGROVE_TOKEN", "secret")
    monkeypatch.setenv("TASKGROVE_CA_FILE", str(tmp_path / "ca.pem"))
    config = ClientConfig.from_env(timeout=5)
    assert (config.address, config.token, config.timeout) == ("127.0.0.1:7000", "secret", 5)
    assert config.tls == TLSConfig(ca_file=tmp_path / "ca.pem")
    assert ClientConfig.from_env("127.0.0.1:1").address == "127.0.0.1:1"


def test_gc_stats_is_a_flag_off_by_default() -> None:
    assert ServerConfig().gc_stats is False
    assert ServerConfig.from_env({"TASKGROVE_GC_STATS": "1"}).gc_stats is True
    assert ServerConfig.from_env({"TASKGROVE_GC_STATS": "off"}).gc_stats is False
    with pytest.raises(ValueError, match="TASKGROVE_GC_STATS"):
        ServerConfig.from_env({"TASKGROVE_GC_STATS": "sometimes"})
