"""The one place where domain errors become gRPC statuses with rich details.

Details travel in trailing metadata, which gRPC caps (16 KiB): a status is trimmed to a
budget (the first violations and a count, short messages and metadata values) so that its
code and reason always arrive, whatever the request held.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from taskgrove.domain import reasons

from taskgrove_server.errors import Code, FieldViolation, ServiceError
from taskgrove_server.storage.failures import is_transient
from taskgrove_server.storage.writer import storage_unavailable

log = logging.getLogger(__name__)

DOMAIN = "taskgrove.dev"
MAX_VIOLATIONS = 20
MAX_MESSAGE = 1000
MAX_FIELD = 200
MAX_METADATA_VALUE = 500
MAX_STATUS_BYTES = 6000
"""Serialised google.rpc.Status; base64 in metadata makes it a third larger."""

_GRPC_CODES = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


class Malformed:
    """Stands in for a request that could not be decoded (see registration.py)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def malformed_error(request: Malformed) -> ServiceError:
    return ServiceError(
        Code.INVALID_ARGUMENT,
        reasons.MALFORMED_REQUEST,
        f"the request could not be decoded ({type(request.error).__name__}); "
        "nested too deep, not protobuf, or invalid UTF-8",
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status(
    error: ServiceError, violations: list[FieldViolation], extra: dict[str, str]
) -> status_pb2.Status:
    message = _cut(error.message, MAX_MESSAGE)
    status = status_pb2.Status(code=_GRPC_CODES[error.code].value[0], message=message)
    metadata = {
        _cut(key, 64): _cut(value, MAX_METADATA_VALUE)
        for key, value in list(error.metadata.items())[:10]
    } | extra
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))
    status.details.append(info)
    if violations:
        packed = any_pb2.Any()
        packed.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_cut(v.field, MAX_FIELD),
                        description=_cut(v.description, 300),
                        reason=v.reason,
                    )
                    for v in violations
                ]
            )
        )
        status.details.append(packed)
    return status


def to_status(error: ServiceError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    """The status for `error`, within the metadata budget."""
    total = max(len(error.violations), error.violations_total)
    violations = error.violations[:MAX_VIOLATIONS]
    extra = {}
    if total > len(violations):
        extra["violations_total"] = str(total)
    status = _status(error, violations, extra)
    while status.ByteSize() > MAX_STATUS_BYTES and violations:
        violations = violations[: len(violations) // 2]
        extra["violations_total"] = str(total)
        status = _status(error, violations, extra)
    return _GRPC_CODES[error.code], status


async def abort(context: Any, error: ServiceError) -> NoReturn:
    code, status = to_status(error)
    await context.abort(
        code,
        status.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def service_error(exc: Exception, where: str) -> ServiceError:
    """Any exception as the status it answers: its own, UNAVAILABLE while storage fails,
    else INTERNAL (logged)."""
    if isinstance(exc, ServiceError):
        return exc
    if is_transient(exc):
        return storage_unavailable()
    log.exception("unexpected error in %s", where)
    return ServiceError(Code.INTERNAL, reasons.INTERNAL, f"internal error: {type(exc).__name__}")


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")
Handler = Callable[[Self, Req, Any], Awaitable[Resp]]


def maps_errors(handler: Handler[Self, Req, Resp]) -> Handler[Self, Req, Resp]:
    """Undecodable requests, ServiceError and any other exception become their status."""

    @functools.wraps(handler)
    async def wrapper(self: Self, request: Req, context: Any) -> Resp:
        if isinstance(request, Malformed):
            await abort(context, malformed_error(request))
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, service_error(exc, handler.__name__))

    return wrapper
