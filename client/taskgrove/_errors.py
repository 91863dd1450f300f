"""Typed SDK exceptions carrying the server's stable error reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str
    reason: str = ""


@dataclass(eq=False)
class TaskgroveError(Exception):
    """An RPC failed. `reason` is the server's stable UPPER_SNAKE reason (ErrorInfo)."""

    message: str
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        prefix = f"{self.reason}: " if self.reason else ""
        return f"{prefix}{self.message} ({self.code.name})"


class InvalidArgumentError(TaskgroveError):
    """The request was invalid (see `field_violations`); nothing was changed."""


class NotFoundError(TaskgroveError):
    """A task (or a parent it names) does not exist, or belongs to another user."""


class FailedPreconditionError(TaskgroveError):
    """The task is not in a state that allows the request."""


class AlreadyExistsError(TaskgroveError):
    pass


class AbortedError(TaskgroveError):
    """A concurrent change won; re-read and try again."""


class ResourceExhaustedError(TaskgroveError):
    pass


class UnavailableError(TaskgroveError):
    """The server is unreachable or shutting down; safe to retry."""


class DeadlineExceededError(TaskgroveError):
    pass


class PermissionDeniedError(TaskgroveError):
    pass


class UnauthenticatedError(TaskgroveError):
    pass


class OutOfRangeError(TaskgroveError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[TaskgroveError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
}


def from_rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError) -> TaskgroveError:
    """The typed exception for a failed call, with the details the server attached."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason)
                    for v in bad_request.field_violations
                )
    cls = _BY_CODE.get(code, TaskgroveError)
    return cls(message, code, reason, metadata, violations)
