"""The port's TLS: server credentials from the configured PEM files.

The files are parsed and matched here, at start, so that a wrong path, a key of another
certificate or an expired certificate stops the server with one line naming the setting,
instead of a port whose every handshake fails with nothing in the log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from taskgrove_server.config import ConfigError, ServerConfig


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """None when TLS is off; with a client CA, every connection must present a
    certificate it signed (mutual TLS)."""
    if not config.tls_enabled:
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ConfigError("--tls-cert and --tls-key: TLS needs both, a certificate and its key")
    chain = _read(config.tls_cert_file, "--tls-cert")
    key = _read(config.tls_key_file, "--tls-key")
    _check_pair(chain, key)
    client_ca = None
    if config.tls_client_ca_file:
        client_ca = _read(config.tls_client_ca_file, "--tls-client-ca")
        _certificates(client_ca, "--tls-client-ca")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{flag} {path}: {error.strerror or error}") from None


def _certificates(pem: bytes, flag: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"{flag}: no PEM certificate in the file") from None


def _check_pair(chain: bytes, key_pem: bytes) -> None:
    leaf = _certificates(chain, "--tls-cert")[0]
    try:
        key = load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError("--tls-key: the key is encrypted; give an unencrypted PEM key") from None
    except ValueError:
        raise ConfigError("--tls-key: no PEM private key in the file") from None

    def spki(public: object) -> bytes:
        return public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]

    if spki(leaf.public_key()) != spki(key.public_key()):
        raise ConfigError("--tls-key is not the key of the certificate in --tls-cert")
    expired = leaf.not_valid_after_utc
    if expired <= datetime.now(UTC):
        raise ConfigError(f"--tls-cert: the certificate expired on {expired:%Y-%m-%d %H:%M} UTC")
