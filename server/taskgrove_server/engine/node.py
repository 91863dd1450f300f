"""The engine's in-memory view of one task of a loaded tree, and of a loaded tree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from taskgrove.domain.aggregation import StatusCounts, contribution, subtree_progress

from taskgrove_server.clock import now_us
from taskgrove_server.events.event import CREATED, Event
from taskgrove_server.storage.records import StateChange, TaskRow


@dataclass(slots=True, eq=False)
class Node:
    id: str
    parent_id: str | None
    root_id: str
    user_id: str
    name: str
    executor: str | None
    priority: int
    dependencies: dict[str, bool]
    """Dependency id -> required."""
    inputs: dict[str, Any]
    params: dict[str, Any]
    status: str
    execution_requested: bool
    attempt: int
    max_attempts: int
    retry_backoff_ms: int
    timeout_ms: int | None
    result: Any
    error: dict[str, Any] | None
    progress: float
    progress_message: str
    started_us: int | None
    ended_us: int | None
    version: int
    """Mirrors the stored `version` (the etag): +1 on every stored change."""
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    counts: StatusCounts | None = None
    """For groups: statuses of the executable tasks below."""
    progress_total: float = 0.0
    """For groups: the sum of the contributions of the executable tasks below."""
    contribution: float = 0.0
    """For executable tasks: what this task adds to its groups' `progress_total`."""
    waiting: set[str] = field(default_factory=set)
    """Ids of the dependencies not yet finished (pending executable tasks only)."""
    retry_at_us: int | None = None
    """While waiting out a retry backoff: when the next attempt may start."""
    progress_written_us: int = 0
    progress_flush_pending: bool = False
    detached: bool = False
    """Set when the engine let go of this node's tree (unloaded or reloaded): whatever
    still refers to it (a timer, a queue entry, a running attempt) must leave it alone."""

    @property
    def is_group(self) -> bool:
        return self.executor is None

    def current_contribution(self) -> float:
        return contribution(self.status, self.progress)

    def group_progress(self, status: str | None = None) -> float:
        """A group's progress: the mean over the executable tasks below (DESIGN 3)."""
        assert self.counts is not None
        return subtree_progress(self.progress_total, self.counts.total, status or self.status)

    @classmethod
    def from_row(cls, row: TaskRow) -> Node:
        return cls(
            id=row.id,
            parent_id=row.parent_id,
            root_id=row.root_id,
            user_id=row.user_id,
            name=row.name,
            executor=row.executor,
            priority=row.priority,
            dependencies={d["id"]: bool(d.get("required", True)) for d in row.dependencies},
            inputs=row.inputs,
            params=row.params,
            status=row.status,
            execution_requested=row.execution_requested,
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            retry_backoff_ms=row.retry_backoff_ms,
            timeout_ms=row.timeout_ms,
            result=row.result,
            error=row.error,
            progress=row.progress,
            progress_message=row.progress_message,
            started_us=row.started_us,
            ended_us=row.ended_us,
            version=row.version,
        )

    def ancestors(self) -> Iterator[Node]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def subtree(self) -> Iterator[Node]:
        """This node and every descendant, parents first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def event(self, event_type: str, previous_status: str | None) -> Event:
        return Event(
            task_id=self.id,
            root_id=self.root_id,
            user_id=self.user_id,
            parent_id=self.parent_id,
            name=self.name,
            type=event_type,
            status=self.status,
            previous_status=previous_status,
            progress=self.progress,
            progress_message=self.progress_message,
            error=self.error,
            attempt=self.attempt,
            is_group=self.is_group,
            time_us=now_us(),
        )

    def state_change(self, expected_status: str) -> StateChange:
        """The guarded update that persists this node's mutable state."""
        return StateChange(  # positional: this runs for every change of every task
            self.id,
            expected_status,
            self.status,
            self.execution_requested,
            self.attempt,
            self.result,
            self.error,
            self.progress,
            self.progress_message,
            self.started_us,
            self.ended_us,
            now_us(),
        )


@dataclass(slots=True, eq=False)
class Tree:
    """A loaded tree: its nodes (parents first) and how many of them still run."""

    root: Node
    nodes: list[Node] = field(default_factory=list)
    active: int = 0
    """Executable tasks requested to run that have not finished."""


def created_event(row: TaskRow) -> Event:
    """The `created` event of a task row about to be stored."""
    return Event(
        task_id=row.id,
        root_id=row.root_id,
        user_id=row.user_id,
        parent_id=row.parent_id,
        name=row.name,
        type=CREATED,
        status=row.status,
        previous_status=None,
        progress=row.progress,
        progress_message=row.progress_message,
        error=None,
        attempt=row.attempt,
        is_group=row.executor is None,
        time_us=row.created_us,
    )
