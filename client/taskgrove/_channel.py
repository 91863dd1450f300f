"""The one place channels are made: TLS, token, keepalive and message sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from taskgrove._config import ClientConfig, TLSConfig


def channel_options(config: ClientConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_seconds * 1000)),
        *config.options,
    ]


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )


class _BearerToken(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call (TLS or not)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = list(details.metadata or ())
        metadata.append(self._header)
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_token(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_token(details), request)


def new_channel(config: ClientConfig) -> grpc.aio.Channel:
    """An asyncio channel to `config.address` (connects lazily)."""
    options = channel_options(config)
    interceptors = [_BearerToken(config.token)] if config.token else None
    if config.tls is None:
        return grpc.aio.insecure_channel(config.address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(
        config.address, _credentials(config.tls), options=options, interceptors=interceptors
    )
