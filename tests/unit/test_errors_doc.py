"""docs/errors.md covers the contract: a section for every RPC, every reason somewhere, and
no reason that the enum does not have (a renamed or removed one fails here)."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from taskgrove.v1 import error_reason_pb2, task_service_pb2

DOC = Path(__file__).parents[2] / "docs" / "errors.md"
REASONS = {
    value.name.removeprefix("ERROR_REASON_")
    for value in error_reason_pb2.DESCRIPTOR.enum_types_by_name["ErrorReason"].values
    if value.number != 0
}


def test_every_rpc_has_its_section() -> None:
    service = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
    sections = set(re.findall(r"^### (\w+)$", DOC.read_text(), re.MULTILINE))
    assert sections == {method.name for method in service.methods}


def test_every_reason_is_documented_and_every_documented_one_exists() -> None:
    codes = {code.name for code in grpc.StatusCode} - REASONS  # CANCELLED, INTERNAL are both
    quoted = set(re.findall(r"`([A-Z][A-Z_]+)`", DOC.read_text())) - codes
    assert REASONS - quoted == set(), "reasons missing from docs/errors.md"
    assert quoted - REASONS == set(), "docs/errors.md names reasons the enum lacks"
