"""JSON values <-> protobuf Struct/Value, shared by the SDK and the server."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def _tidy(value: Any) -> Any:
    """Protobuf carries every number as a double; give integral ones back as int."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _tidy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tidy(item) for item in value]
    return value


def to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if data:
        message.update(data)  # about 3x faster than json_format.ParseDict
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = _tidy(json_format.MessageToDict(message))
    return result


def to_value(data: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    if isinstance(data, dict):
        message.struct_value.update(data)
    elif isinstance(data, list | tuple):
        message.list_value.extend(data)
    else:
        json_format.ParseDict(data, message)
    return message


def from_value(message: struct_pb2.Value) -> Any:
    return _tidy(json_format.MessageToDict(message))
