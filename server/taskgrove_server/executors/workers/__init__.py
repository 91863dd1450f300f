"""Executors served by workers: processes connected over WorkerService, anywhere."""

from __future__ import annotations

from taskgrove_server.executors.workers.messages import (
    Acknowledge,
    Assign,
    Cancel,
    Close,
    RemoteExecutorSpec,
    ToWorker,
    WorkerSpec,
)
from taskgrove_server.executors.workers.pool import ConnectedWorker, WorkerPool, WorkerView

__all__ = [
    "Acknowledge",
    "Assign",
    "Cancel",
    "Close",
    "ConnectedWorker",
    "RemoteExecutorSpec",
    "ToWorker",
    "WorkerPool",
    "WorkerSpec",
    "WorkerView",
]
