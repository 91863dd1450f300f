"""Registering TaskService and WorkerService on a grpc.aio server.

Two changes to what the generated code registers:
- requests that cannot be decoded (not protobuf, invalid UTF-8, nested too deep) reach
  the handler as `Malformed`, which answers INVALID_ARGUMENT / MALFORMED_REQUEST (gRPC
  itself would answer a bare INTERNAL or UNKNOWN without a reason);
- WatchEvents writes pre-encoded bytes (see api/event_wire.py), so that a batch of events
  shared by many watchers is serialised once, not once per watcher; its serializer passes
  bytes through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from taskgrove.v1 import (
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

from taskgrove_server.api.error_mapping import Malformed

SERVICE_NAME = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name
WORKER_SERVICE_NAME = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name


def _serialize_watch_response(message: bytes | Message) -> bytes:
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as error:  # DecodeError, RecursionError, UnicodeDecodeError...
            return Malformed(error)

    return deserialize


class _Capture:
    """Stands in for the server to collect the generated method handlers."""

    handlers: dict[str, Any]

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
        self.handlers = handlers


def add_task_service(servicer: task_service_pb2_grpc.TaskServiceServicer, server: Any) -> None:
    capture = _Capture()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(servicer, capture)
    handlers = {}
    for name, handler in capture.handlers.items():
        handlers[name] = handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer)
        )
    handlers["WatchEvents"] = grpc.unary_stream_rpc_method_handler(
        servicer.WatchEvents,
        request_deserializer=_tolerant(task_service_pb2.WatchEventsRequest.FromString),
        response_serializer=_serialize_watch_response,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def add_worker_service(
    servicer: worker_service_pb2_grpc.WorkerServiceServicer, server: Any
) -> None:
    """WorkerService, its stream's messages decoded tolerantly (see `_tolerant`)."""
    capture = _Capture()
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, capture)
    handlers = {
        name: handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
        for name, handler in capture.handlers.items()
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(WORKER_SERVICE_NAME, handlers),)
    )
    server.add_registered_method_handlers(WORKER_SERVICE_NAME, handlers)
