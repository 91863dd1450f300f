"""Interceptors keep one wrapped copy of each method's handler (wrapping it anew cost every
call ~10 us), and never hand out a copy made of another handler (an inner interceptor
may answer one call with a handler of its own). That every call is still counted and
authenticated, through a real server, is test_observability's and test_auth's."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
from taskgrove_server.api.authentication import AuthInterceptor
from taskgrove_server.api.handler_wrapping import WrappedHandlers
from taskgrove_server.auth import Authenticator
from taskgrove_server.config import ServerConfig
from taskgrove_server.observability.grpc_observer import RpcObserver
from taskgrove_server.observability.metrics import Metrics

GET_TASK = "/taskgrove.v1.TaskService/GetTask"
LIST_TASKS = "/taskgrove.v1.TaskService/ListTasks"


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


async def _echo(request: Any, context: Any) -> Any:
    return request


def _finding(handler: Any) -> Any:
    async def continuation(details: Any) -> Any:
        return handler

    return continuation


class _Wraps:
    def __init__(self) -> None:
        self.wrapped: list[str] = []

    def __call__(self, method: str, behavior: Any) -> Any:
        self.wrapped.append(method)

        async def wrapper(request: Any, context: Any) -> Any:
            return await behavior(request, context)

        return wrapper


def test_a_methods_handler_is_wrapped_once() -> None:
    wraps = _Wraps()
    handlers = WrappedHandlers(wraps)
    get, listing = (grpc.unary_unary_rpc_method_handler(_echo) for _ in range(2))
    first = handlers.of(GET_TASK, get)
    assert handlers.of(GET_TASK, get) is first
    assert first.unary_unary is not get.unary_unary
    assert handlers.of(LIST_TASKS, listing) is not first
    assert handlers.of(LIST_TASKS, listing) is handlers.of(LIST_TASKS, listing)
    assert wraps.wrapped == [GET_TASK, LIST_TASKS]


def test_another_handler_for_the_same_method_is_wrapped_afresh() -> None:
    wraps = _Wraps()
    handlers = WrappedHandlers(wraps)
    usual, other = (grpc.unary_unary_rpc_method_handler(_echo) for _ in range(2))
    kept = handlers.of(GET_TASK, usual)
    answered = handlers.of(GET_TASK, other)
    assert answered is not kept
    assert answered.unary_unary is not other.unary_unary
    again = handlers.of(GET_TASK, usual)  # the usual one back: wrapped again, not `other`'s
    assert again is not answered
    assert wraps.wrapped == [GET_TASK] * 3


async def test_the_observer_and_the_guard_keep_their_copies() -> None:
    config = ServerConfig(address="127.0.0.1:0", db_url="sqlite+aiosqlite:///:memory:")
    interceptors = [RpcObserver(Metrics()), AuthInterceptor(Authenticator(config))]
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    for interceptor in interceptors:
        first = await interceptor.intercept_service(_finding(handler), _Details(GET_TASK))
        assert first.unary_unary is not handler.unary_unary
        assert await interceptor.intercept_service(_finding(handler), _Details(GET_TASK)) is first
        assert await interceptor.intercept_service(_finding(None), _Details("/no.Such/M")) is None
