"""The authentication interceptor: every call but health (and reflection) proves who it
is before its handler runs, and may call only what its roles allow.

The handler learns the caller from `current_caller()`: the interceptor sets it in the
call's own context (grpc.aio runs each call as its own asyncio task), so nothing a
request carries can claim an identity.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from taskgrove.domain import reasons

from taskgrove_server.api.error_mapping import abort
from taskgrove_server.api.handler_wrapping import WrappedHandlers
from taskgrove_server.api.peer_certificate import certificate_name
from taskgrove_server.auth import Authenticator, AuthError
from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.identity import ANONYMOUS, Caller

log = logging.getLogger(__name__)

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Served without credentials: health checks come from load balancers and probes; the
schema reflection shows is public (it can be turned off)."""
TASK_SERVICE = "/taskgrove.v1.TaskService/"
WORKER_SERVICE = "/taskgrove.v1.WorkerService/"
READ_METHODS = frozenset(
    {
        "GetTask",
        "GetTaskTree",
        "ListTasks",
        "ListExecutors",
        "ExplainTask",
        "WatchEvents",
        "StreamTaskLogs",
    }
)

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("taskgrove_caller")


def current_caller(auth_required: bool) -> Caller:
    """The caller of the call being served; ANONYMOUS while authentication is off."""
    caller = _caller.get(None)
    if caller is not None:
        return caller
    if auth_required:
        # Only reachable if a service were served without the interceptor: refuse.
        raise ServiceError(Code.INTERNAL, reasons.INTERNAL, "the call was not authenticated")
    return ANONYMOUS


def _allowed(caller: Caller, method: str) -> bool:
    if method.startswith(TASK_SERVICE):
        name = method[len(TASK_SERVICE) :]
        return caller.may_read if name in READ_METHODS else caller.may_write
    if method.startswith(WORKER_SERVICE):
        return caller.may_serve
    return False  # services added later decide their roles here


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self._handlers = WrappedHandlers(self._guarded)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        return self._handlers.of(method, handler)

    async def _enter(self, method: str, context: Any) -> None:
        """Authenticate the call and check its role, or end it (UNAUTHENTICATED,
        PERMISSION_DENIED) before its handler sees the request."""
        authorization = [
            value
            for key, value in (context.invocation_metadata() or ())
            if key == "authorization" and isinstance(value, str)
        ]
        try:
            caller = self._authenticator.authenticate(authorization, certificate_name(context))
        except AuthError as error:
            await abort(context, ServiceError(Code.UNAUTHENTICATED, error.reason, error.message))
        if not _allowed(caller, method):
            await abort(
                context,
                ServiceError(
                    Code.PERMISSION_DENIED,
                    reasons.ROLE_NOT_PERMITTED,
                    f"roles {sorted(caller.roles)} do not allow {method.rsplit('/', 1)[-1]}",
                ),
            )
        _caller.set(caller)

    def _guarded(self, method: str, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Any) -> Any:
                await self._enter(method, context)
                async for reply in behavior(request, context):
                    yield reply

            return stream

        async def call(request: Any, context: Any) -> Any:
            await self._enter(method, context)
            return await behavior(request, context)

        return call
