"""What the server tells a worker, as plain values (`api/worker_wire.py` makes protobuf of
them); and what a worker registers as."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RemoteExecutorSpec:
    """An executor as a worker (or the operator's declaration) describes it."""

    id: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """A worker's registration."""

    worker_id: str
    name: str
    slots: int
    executors: tuple[RemoteExecutorSpec, ...]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assign:
    lease_id: str
    fencing_token: int
    task_id: str
    root_id: str
    name: str
    executor: str
    attempt: int
    user_id: str
    inputs: Mapping[str, Any]
    params: Mapping[str, Any]
    dependency_results: Mapping[str, Any]
    deadline_us: int | None


@dataclass(frozen=True, slots=True)
class Cancel:
    lease_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Acknowledge:
    lease_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Close:
    """The stream ends: the same worker connected again on another stream."""


ToWorker = Assign | Cancel | Acknowledge | Close
