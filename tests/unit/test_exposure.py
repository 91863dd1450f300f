"""The safe-default rule of `serve` (issue "Security", point 4): an address beyond loopback
is served only with TLS and authentication, or with `insecure` and a warning each start.
Nothing here binds a port: the rule is applied before the server opens anything."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ConfigError, ServerConfig
from taskgrove_server.exposure import exposure_warning, host_of, is_loopback


@pytest.mark.parametrize(
    ("address", "host"),
    [("127.0.0.1:50051", "127.0.0.1"), ("[::1]:80", "::1"), (":50051", ""), ("[::]:0", "::")],
)
def test_host_of(address: str, host: str) -> None:
    assert host_of(address) == host


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.3.4.5:1", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.1.2.3:50051", False),
        ("192.168.0.10:50051", False),
        ("no-such-host.invalid:50051", False),
    ],
)
def test_which_addresses_are_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


AUTH = {"tokens_file": "tokens.toml"}
TLS = {"tls_cert_file": "cert.pem", "tls_key_file": "key.pem"}


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({}, "without TLS and authentication"),
        (AUTH, "without TLS"),
        (TLS, "without authentication"),
    ],
)
def test_an_exposed_address_without_protection_is_refused(
    fields: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError, match=f"refusing to serve 0.0.0.0:50051 {missing}:"):
        exposure_warning(ServerConfig(address="0.0.0.0:50051", **fields))
    warning = exposure_warning(ServerConfig(address="0.0.0.0:50051", insecure=True, **fields))
    assert warning is not None and warning.startswith(f"INSECURE: serving 0.0.0.0:50051 {missing}")


def test_protected_or_loopback_addresses_start_without_a_word() -> None:
    assert exposure_warning(ServerConfig(address="0.0.0.0:50051", **AUTH, **TLS)) is None
    # Mutual TLS is both: the client CA authenticates.
    mtls = {**TLS, "tls_client_ca_file": "ca.pem"}
    assert exposure_warning(ServerConfig(address="[::]:50051", **mtls)) is None
    for address in ("127.0.0.1:0", "[::1]:0", "localhost:0"):
        assert exposure_warning(ServerConfig(address=address)) is None
        assert exposure_warning(ServerConfig(address=address, insecure=True)) is None


async def test_the_server_refuses_before_opening_anything(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    config = ServerConfig(address="0.0.0.0:0", db_url=f"sqlite+aiosqlite:///{db}")
    with pytest.raises(ConfigError):
        TaskgroveServer(config)
    assert not db.exists()


async def test_insecure_warns_when_the_server_is_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(
        address="0.0.0.0:0", db_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", insecure=True
    )
    with caplog.at_level(logging.WARNING, logger="taskgrove_server.app"):
        TaskgroveServer(config)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("INSECURE")]


def test_serve_refuses_an_exposed_address_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "0.0.0.0:0"]
    command += ["--db", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0], result.stderr
    assert not (tmp_path / "x.db").exists()
