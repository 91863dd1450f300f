"""The rich status of a failed call (the `grpc-status-details-bin` trailer: a
google.rpc.Status with ErrorInfo and BadRequest details), and SDK-typed errors of raw stub
calls."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from taskgrove._errors import from_rpc_error

T = TypeVar("T")

DETAILS_KEY = "grpc-status-details-bin"
DOMAIN = "taskgrove.dev"
"""The ErrorInfo domain of the server's errors."""


def status_trailers(error: grpc.aio.AioRpcError) -> list[bytes]:
    """The values of every `grpc-status-details-bin` trailer of the failed call."""
    return [value for key, value in error.trailing_metadata() or () if key == DETAILS_KEY]


def unpack(
    status: status_pb2.Status,
) -> tuple[list[error_details_pb2.ErrorInfo], list[error_details_pb2.BadRequest]]:
    """The ErrorInfo and BadRequest details of `status`, in order."""
    infos: list[error_details_pb2.ErrorInfo] = []
    bad_requests: list[error_details_pb2.BadRequest] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            bad_requests.append(bad_request)
    return infos, bad_requests


def error_info(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], list[str]]:
    """(ErrorInfo reason, ErrorInfo metadata, BadRequest fields) from the status details;
    empty where the call has none (nothing is asserted)."""
    reason, metadata = "", {}
    fields: list[str] = []
    for value in status_trailers(error):
        infos, bad_requests = unpack(status_pb2.Status.FromString(value))
        if infos:
            reason, metadata = infos[-1].reason, dict(infos[-1].metadata)
        fields.extend(v.field for bad in bad_requests for v in bad.field_violations)
    return reason, metadata, fields


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The reason of the first ErrorInfo of the status details ("" without one)."""
    for value in status_trailers(error):
        infos, _ = unpack(status_pb2.Status.FromString(value))
        if infos:
            reason: str = infos[0].reason
            return reason
    return ""


def describe(error: grpc.aio.AioRpcError | None) -> str:
    """A one-line account of a failed call, for assertion messages."""
    if error is None:
        return "no error"
    reason, metadata, _ = error_info(error)
    return f"{error.code().name} {reason} {metadata or ''} {error.details()!r}"


async def raw(call: Awaitable[T]) -> T:
    """A raw stub call, with the SDK's typed exceptions."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise from_rpc_error(error) from None
