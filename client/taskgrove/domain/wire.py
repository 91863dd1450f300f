"""Domain values <-> their protobuf forms: statuses and JSON values (Struct/Value)."""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import json_format, struct_pb2

from taskgrove.domain import statuses
from taskgrove.domain.json_values import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from taskgrove.v1 import task_pb2

_STATUS_TO_PROTO: Final[dict[str, task_pb2.TaskStatus.ValueType]] = {
    statuses.PENDING: task_pb2.TASK_STATUS_PENDING,
    statuses.IN_PROGRESS: task_pb2.TASK_STATUS_IN_PROGRESS,
    statuses.COMPLETED: task_pb2.TASK_STATUS_COMPLETED,
    statuses.FAILED: task_pb2.TASK_STATUS_FAILED,
    statuses.CANCELLED: task_pb2.TASK_STATUS_CANCELLED,
}
_STATUS_FROM_PROTO: Final = {v: k for k, v in _STATUS_TO_PROTO.items()}


def status_to_proto(status: str) -> task_pb2.TaskStatus.ValueType:
    return _STATUS_TO_PROTO[status]


def status_from_proto(value: task_pb2.TaskStatus.ValueType) -> str:
    """The string of a proto status; raises KeyError for UNSPECIFIED."""
    return _STATUS_FROM_PROTO[value]


class InvalidJsonValue(ValueError):
    """A Struct or Value that is not plain JSON: NaN or infinity, nested too deep, or a
    Value with no kind set (what a client sends for a value it failed to encode).

    `path`: the keys and list indexes from the top Struct to the offending value.
    """

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def within(self, key: str | int) -> InvalidJsonValue:
        return InvalidJsonValue(self.message, (key, *self.path))

    def field(self, top: str) -> str:
        """The field path below `top`, e.g. `task.inputs.resource` or `...items[2]`."""
        return top + "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in self.path)


def _number(value: float) -> float | int:
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidJsonValue("NaN and infinity are not JSON numbers")
    # Protobuf carries every number as a double; give integral ones back as int.
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _from_value(message: struct_pb2.Value, depth: int) -> Any:
    """`depth`: how many objects and arrays hold the value."""
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        return _number(message.number_value)
    if kind == "string_value":
        return message.string_value
    if kind == "bool_value":
        return message.bool_value
    if kind == "struct_value":
        return _from_struct(message.struct_value, depth)
    if kind == "list_value":
        if depth >= MAX_JSON_DEPTH:
            raise InvalidJsonValue(f"nested deeper than {MAX_JSON_DEPTH} levels")
        items = []
        for index, item in enumerate(message.list_value.values):
            try:
                items.append(_from_value(item, depth + 1))
            except InvalidJsonValue as error:
                raise error.within(index) from None
        return items
    if kind == "null_value":
        return None
    # Not null: nothing was encoded (a JSON null is `null_value`), e.g. a client that
    # wrote `{string_value: ...}` where its library expects `stringValue`.
    raise InvalidJsonValue("a Value with no kind set; a JSON null is null_value")


def _from_struct(message: struct_pb2.Struct, depth: int) -> dict[str, Any]:
    if depth >= MAX_JSON_DEPTH:
        raise InvalidJsonValue(f"nested deeper than {MAX_JSON_DEPTH} levels")
    data = {}
    for key, value in message.fields.items():
        try:
            data[key] = _from_value(value, depth + 1)
        except InvalidJsonValue as error:
            raise error.within(key) from None
    return data


def to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if data:
        message.update(data)  # about 3x faster than json_format.ParseDict
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a JSON object; raises `InvalidJsonValue` for NaN, infinity or depth."""
    return _from_struct(message, 0)


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
    """A Value as JSON; raises `InvalidJsonValue` for NaN, infinity or depth."""
    return _from_value(message, 0)
