"""The `ClientConfig` of a client command: the environment's, with the flags over it."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from taskgrove._config import ClientConfig, TLSConfig
from taskgrove.cli.session import CommandError


def _readable(flag: str, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    try:
        path.read_bytes()
    except OSError as error:
        raise CommandError("INVALID_ARGUMENT", f"{flag} {value}: {error.strerror}") from None
    return path


def client_config(args: argparse.Namespace) -> ClientConfig:
    """$TASKGROVE_* first (see `ClientConfig.from_env`), then --ca-file, --tls,
    --client-cert, --client-key and --token-file; files are checked before connecting."""
    try:
        return _client_config(args)
    except ValueError as error:
        raise CommandError("INVALID_ARGUMENT", str(error)) from None


def _client_config(args: argparse.Namespace) -> ClientConfig:
    config = ClientConfig.from_env(getattr(args, "address", None), timeout=args.rpc_timeout)
    ca = _readable("--ca-file", getattr(args, "ca_file", None))
    cert = _readable("--client-cert", getattr(args, "client_cert", None))
    key = _readable("--client-key", getattr(args, "client_key", None))
    if ca or cert or key or getattr(args, "tls", False):
        base = config.tls or TLSConfig()
        config = replace(
            config,
            tls=TLSConfig(
                ca_file=ca or base.ca_file,
                cert_file=cert or base.cert_file,
                key_file=key or base.key_file,
            ),
        )
    if token_file := getattr(args, "token_file", None):
        config = replace(config, token=_token(token_file))
    return config


def _token(path: str) -> str:
    try:
        token = Path(path).read_text(errors="replace").strip()
    except OSError as error:
        raise CommandError("INVALID_ARGUMENT", f"--token-file {path}: {error.strerror}") from None
    if not token:
        raise CommandError("INVALID_ARGUMENT", f"--token-file {path} is empty")
    return token
