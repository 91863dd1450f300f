"""gRPC-Web -> the server's own gRPC port: each browser call becomes a real gRPC call on a
loopback channel, bytes in and bytes out, with the caller's `authorization` passed along.
So authentication, owner rules, limits, interceptors and error statuses are the API's
own: the console has no second contract to keep in step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import grpc
from taskgrove.v1 import task_service_pb2

from taskgrove_server.console.upstream_tls import target_name_override

SERVICE = "taskgrove.v1.TaskService"
_STATUS_DETAILS = "grpc-status-details-bin"
_PASSED_METADATA = ("authorization",)


def _methods() -> dict[str, bool]:
    """`/taskgrove.v1.TaskService/Method` -> whether it streams its response. Only
    TaskService is bridged (workers speak gRPC; reflection and health need no browser)."""
    service = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
    return {f"/{SERVICE}/{m.name}": m.server_streaming for m in service.methods}


METHODS = _methods()


@dataclass(frozen=True, slots=True)
class Status:
    """How a call ended: its code, message and `google.rpc.Status` details (bytes)."""

    code: int
    message: str = ""
    details: bytes | None = None


def _status_of(error: grpc.aio.AioRpcError) -> Status:
    details = None
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS and isinstance(value, bytes):
            details = value
    return Status(error.code().value[0], error.details() or "", details)


def metadata_from(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, headers[name]) for name in _PASSED_METADATA if name in headers)


def timeout_from(headers: dict[str, str]) -> float | None:
    """`grpc-timeout` (e.g. `5S`, `200m`) in seconds; None when absent or malformed."""
    text = headers.get("grpc-timeout", "")
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    if len(text) < 2 or not text[:-1].isdigit() or text[-1] not in units:
        return None
    return int(text[:-1]) * units[text[-1]]


class Upstream:
    """The loopback channel to this server's gRPC port (TLS when the port speaks TLS,
    trusting the server's own certificate, checked for a name it gives: upstream_tls)."""

    def __init__(self, port: int, *, tls_cert_file: str = "", max_message_bytes: int) -> None:
        target = f"127.0.0.1:{port}"
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_cert_file:
            root = Path(tls_cert_file).read_bytes()
            name = target_name_override(root)
            if name is not None:
                options.append(("grpc.ssl_target_name_override", name))
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)

    async def unary(
        self, path: str, request: bytes, headers: dict[str, str]
    ) -> tuple[bytes | None, Status]:
        call = self._channel.unary_unary(path)
        try:
            reply = await call(
                request, metadata=metadata_from(headers), timeout=timeout_from(headers)
            )
        except grpc.aio.AioRpcError as error:
            return None, _status_of(error)
        assert isinstance(reply, bytes)
        return reply, Status(0)

    async def stream(
        self, path: str, request: bytes, headers: dict[str, str]
    ) -> AsyncGenerator[bytes | Status, None]:
        """Each response message as it comes, then the final Status. Closing the iterator
        early (the browser went away) cancels the upstream call."""
        call = self._channel.unary_stream(path)(
            request, metadata=metadata_from(headers), timeout=timeout_from(headers)
        )
        try:
            async for message in call:
                assert isinstance(message, bytes)
                yield message
            yield Status(0)
        except grpc.aio.AioRpcError as error:
            yield _status_of(error)
        finally:
            call.cancel()

    async def close(self) -> None:
        await asyncio.shield(self._channel.close())
