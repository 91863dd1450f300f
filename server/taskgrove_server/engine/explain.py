"""Why a task is not running: the engine's view turned into reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskgrove.domain import statuses

from taskgrove_server.engine.node import Node


@dataclass(frozen=True, slots=True)
class WaitingOn:
    id: str
    name: str
    status: str
    required: bool
    execution_requested: bool


@dataclass(slots=True)
class Explanation:
    reasons: list[str] = field(default_factory=list)
    summary: str = ""
    waiting: list[WaitingOn] = field(default_factory=list)
    queue_position: int = 0
    retry_at_us: int | None = None
    running: int = 0
    concurrency_limit: int = 0


def explanation_from_dict(value: dict[str, Any]) -> Explanation:
    """An Explanation from its `asdict` form (another replica's answer)."""
    fields = dict(value)
    fields["waiting"] = [WaitingOn(**waiting) for waiting in fields["waiting"]]
    return Explanation(**fields)


def explain(
    node: Node,
    waiting: list[WaitingOn],
    *,
    queue_position: int,
    running: int,
    limit: int,
    executor_running: int,
    executor_limit: int | None,
    workers: tuple[int, int] | None = None,
) -> Explanation:
    """Reasons, most important first (stable codes; see ExplainTaskResponse). `workers`:
    for a remote executor, its connected workers and their free slots."""
    result = Explanation(waiting=waiting, running=running, concurrency_limit=limit)
    if node.is_group:
        result.reasons.append("GROUP")
        result.summary = f"a group runs nothing itself; its status is {node.status}"
        return result
    if node.status in statuses.TERMINAL:
        result.reasons.append("FINISHED")
        result.summary = f"the task has finished: {node.status}"
        return result
    if node.status == statuses.IN_PROGRESS:
        result.reasons.append("RUNNING")
        result.summary = f"attempt {node.attempt} is running"
        return result
    parts = []
    if not node.execution_requested:
        result.reasons.append("NOT_EXECUTING")
        parts.append("it was not executed yet (ExecuteTask on it or an ancestor)")
    if waiting:
        result.reasons.append("WAITING_FOR_DEPENDENCIES")
        names = ", ".join(f"{w.name} ({w.id}: {w.status})" for w in waiting)
        parts.append(f"it waits for {names}")
    if node.retry_at_us is not None:
        result.reasons.append("RETRY_BACKOFF")
        result.retry_at_us = node.retry_at_us
        parts.append(f"attempt {node.attempt + 1} waits out the retry backoff")
    if node.execution_requested and not waiting and node.retry_at_us is None:
        result.queue_position = queue_position
        if running >= limit:
            result.reasons.append("CONCURRENCY_LIMIT")
            parts.append(f"{running} attempts run, the limit is {limit}")
        if executor_limit is not None and executor_running >= executor_limit:
            result.reasons.append("EXECUTOR_LIMIT")
            parts.append(f"executor {node.executor} runs {executor_running} of {executor_limit}")
        if workers is not None and workers[0] == 0:
            result.reasons.append("NO_WORKER")
            parts.append(f"no worker serving executor {node.executor} is connected")
        elif workers is not None and workers[1] == 0:
            result.reasons.append("NO_FREE_WORKER")
            parts.append(f"the {workers[0]} workers serving {node.executor} have no free slot")
        result.reasons.append("QUEUED")
        parts.append(f"it is number {queue_position} among the ready tasks")
    result.summary = "; ".join(parts)
    return result
