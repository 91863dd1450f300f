"""How the SDK, the CLI and the benchmarks reach a server: one `ClientConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = "127.0.0.1:50051"
ADDRESS_ENV = "TASKGROVE_ADDRESS"
TOKEN_ENV = "TASKGROVE_TOKEN"
CA_FILE_ENV = "TASKGROVE_CA_FILE"
CERT_FILE_ENV = "TASKGROVE_CERT_FILE"
KEY_FILE_ENV = "TASKGROVE_KEY_FILE"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Transport security. With no field set, TLS uses the system's root certificates."""

    ca_file: Path | None = None
    """PEM bundle of the certificate authorities to trust (a private CA)."""
    cert_file: Path | None = None
    """PEM client certificate, for mutual TLS (with `key_file`)."""
    key_file: Path | None = None
    """PEM private key of `cert_file`."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "a client certificate needs its key and a key its certificate "
                f"(cert_file, key_file; ${CERT_FILE_ENV}, ${KEY_FILE_ENV})"
            )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where the server is and how to talk to it."""

    address: str = DEFAULT_ADDRESS
    """host:port of the server."""
    tls: TLSConfig | None = None
    """None: a plaintext channel (loopback and trusted networks only)."""
    token: str | None = None
    """Bearer token sent with every call (`authorization` metadata)."""
    timeout: float | None = 60.0
    """Deadline of each unary call in seconds (None: none). Streams have none."""
    keepalive_seconds: float = 30.0
    """Interval of HTTP/2 keepalive pings, so dead connections are noticed."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest message sent or received."""
    options: tuple[tuple[str, Any], ...] = field(default=())
    """Further gRPC channel options, appended last (they win)."""

    @classmethod
    def from_env(cls, address: str | None = None, **overrides: Any) -> ClientConfig:
        """`address`, else $TASKGROVE_ADDRESS, else 127.0.0.1:50051; a token from
        $TASKGROVE_TOKEN; TLS when $TASKGROVE_CA_FILE or $TASKGROVE_CERT_FILE is set."""
        env = os.environ
        tls = None
        if env.get(CA_FILE_ENV) or env.get(CERT_FILE_ENV):
            tls = TLSConfig(
                ca_file=_path(env.get(CA_FILE_ENV)),
                cert_file=_path(env.get(CERT_FILE_ENV)),
                key_file=_path(env.get(KEY_FILE_ENV)),
            )
        config = cls(
            address=address or env.get(ADDRESS_ENV) or DEFAULT_ADDRESS,
            tls=tls,
            token=env.get(TOKEN_ENV) or None,
        )
        return replace(config, **overrides)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
