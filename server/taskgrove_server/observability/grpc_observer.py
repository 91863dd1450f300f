"""The outermost gRPC interceptor: counts every call by method and code with its latency
(a stream when it ends), and logs one line per call that ends in an error.

The log line names the method, the code, the ErrorInfo reason (read back from the status
details the handler sent), the message, the caller (the authenticated user, when there
is one) and the peer. Client errors (INVALID_ARGUMENT, NOT_FOUND...) are logged at INFO,
server-side ones (INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS) at WARNING, and calls the
client cancelled at DEBUG.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from taskgrove_server.api.authentication import current_caller
from taskgrove_server.api.handler_wrapping import WrappedHandlers

if TYPE_CHECKING:
    from taskgrove_server.observability.metrics import Metrics

log = logging.getLogger("taskgrove_server.rpc")

_SERVER_SIDE = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class RpcObserver(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics
        self._handlers = WrappedHandlers(self._observed)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._handlers.of(handler_call_details.method, handler)

    def _observed(self, method: str, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                started = time.perf_counter()
                failure: BaseException | None = None
                try:
                    async for reply in behavior(request, context):
                        yield reply
                except BaseException as error:
                    failure = error
                    raise
                finally:
                    self._ended(method, context, started, failure)

            return stream

        async def call(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as error:
                failure = error
                raise
            finally:
                self._ended(method, context, started, failure)

        return call

    def _ended(
        self, method: str, context: Any, started: float, failure: BaseException | None
    ) -> None:
        elapsed = time.perf_counter() - started
        try:
            code = _code(context, failure)
        except Exception:  # never let observing break a call
            code = grpc.StatusCode.UNKNOWN
        if self._metrics is not None:
            self._metrics.rpcs.get(method, code.name).observe(elapsed)
        if code is not grpc.StatusCode.OK:
            _log_error(method, code, context, failure)


def _code(context: Any, failure: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int) and code:
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if failure is None or isinstance(failure, GeneratorExit):
        return grpc.StatusCode.OK
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _reason(context: Any) -> str:
    """The ErrorInfo reason of the status the handler sent, if any."""
    try:
        trailing = context.trailing_metadata() or ()
    except Exception:
        return ""
    for key, value in trailing:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return str(info.reason)
    return ""


def _log_error(
    method: str, code: grpc.StatusCode, context: Any, failure: BaseException | None
) -> None:
    if code is grpc.StatusCode.CANCELLED:
        level = logging.DEBUG
    elif code in _SERVER_SIDE:
        level = logging.WARNING
    else:
        level = logging.INFO
    if not log.isEnabledFor(level):
        return
    try:
        details = context.details()
    except Exception:
        details = None
    message = details if isinstance(details, str) else (str(failure) if failure else "")
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    caller = current_caller(False).user or "-"
    try:
        peer = str(context.peer())
    except Exception:
        peer = ""
    reason = _reason(context)
    log.log(
        level,
        "%s %s %s: %s (caller %s, peer %s)",
        method,
        code.name,
        reason or "-",
        message,
        caller,
        peer,
        extra={
            "rpc_method": method,
            "code": code.name,
            "reason": reason,
            "error_message": message,
            "caller": caller,
            "peer": peer,
        },
    )
