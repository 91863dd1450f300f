"""The error reasons: one set, published in the proto, the same in every language."""

from __future__ import annotations

from taskgrove import reasons
from taskgrove.v1 import error_reason_pb2

PREFIX = "ERROR_REASON_"


def module_reasons() -> dict[str, str]:
    return {name: value for name, value in vars(reasons).items() if name.isupper()}


def test_the_module_and_the_proto_enum_hold_the_same_reasons() -> None:
    names = error_reason_pb2.ErrorReason.keys()
    assert names[0] == f"{PREFIX}UNSPECIFIED"
    from_proto = {name.removeprefix(PREFIX) for name in names[1:]}
    assert set(module_reasons()) == from_proto


def test_each_reason_is_its_own_name() -> None:
    assert all(name == value for name, value in module_reasons().items())
