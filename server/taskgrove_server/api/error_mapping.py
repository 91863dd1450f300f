"""The one place where domain errors become gRPC statuses with rich details."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from taskgrove_server.errors import Code, TaskgroveError

log = logging.getLogger(__name__)

DOMAIN = "taskgrove.dev"

_GRPC_CODES = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
}


def to_status(error: TaskgroveError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code = _GRPC_CODES[error.code]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    )
    status.details.append(info)
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        status.details.append(packed)
    return code, status


async def abort(context: Any, error: TaskgroveError) -> NoReturn:
    code, status = to_status(error)
    await context.abort(
        code,
        status.message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


async def abort_internal(context: Any, message: str) -> NoReturn:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))
    status.details.append(info)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        message,
        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")
Handler = Callable[[Self, Req, Any], Awaitable[Resp]]


def maps_errors(handler: Handler[Self, Req, Resp]) -> Handler[Self, Req, Resp]:
    """Turn TaskgroveError into its status, and any other exception into INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Self, request: Req, context: Any) -> Resp:
        try:
            return await handler(self, request, context)
        except TaskgroveError as error:
            await abort(context, error)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            log.exception("unexpected error in %s", handler.__name__)
            await abort_internal(context, f"internal error: {type(exc).__name__}")

    return wrapper
