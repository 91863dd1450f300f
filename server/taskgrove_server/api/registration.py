"""Registering TaskService on a grpc.aio server.

WatchEvents writes pre-encoded bytes (see `events/wire.py`), so that a batch of events
shared by many watchers is serialised once, not once per watcher; its serializer passes
bytes through. Everything else is registered exactly as the generated code does.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from taskgrove.v1 import task_service_pb2, task_service_pb2_grpc

SERVICE_NAME = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name


def _serialize_watch_response(message: bytes | Message) -> bytes:
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


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
    handlers = dict(capture.handlers)
    handlers["WatchEvents"] = grpc.unary_stream_rpc_method_handler(
        servicer.WatchEvents,
        request_deserializer=task_service_pb2.WatchEventsRequest.FromString,
        response_serializer=_serialize_watch_response,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
