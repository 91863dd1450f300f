"""What can be written: each queued write is one of these plain records.

The writer commits many of them in one transaction (group commit). A write is also the
unit of failure: when the database refuses a batch, the writer splits it until the
refused write is alone, commits the others, and fails only the request that queued it.
Every write names the trees it changes, so the engine can reload exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskgrove_server.events.event import Event
from taskgrove_server.storage.records import LogLineRow, RemoteExecutorRow, StateChange, TaskRow


@dataclass(slots=True, eq=False)
class InsertTasks:
    """New tasks (parents first) with their `created` events; `under` is the stored task
    they were created under, which now has children, and `lineage` that task and its
    ancestors."""

    rows: list[TaskRow]
    events: list[Event]
    under: str | None = None
    lineage: tuple[str, ...] = ()
    reopens: bool = False
    """Set by the commit: a group of `lineage` had started (it is not pending), as the
    transaction saw it, so the new tasks reopen its derived status."""

    @property
    def root_ids(self) -> tuple[str, ...]:
        return (self.rows[0].root_id,) if self.rows else ()


@dataclass(slots=True, eq=False)
class UpdateState:
    """Guarded state changes that stand or fall together (a task's change and what it
    implies for the groups above it), with their events."""

    changes: list[StateChange]
    events: list[Event]
    root_id: str

    @property
    def root_ids(self) -> tuple[str, ...]:
        return (self.root_id,)


@dataclass(slots=True, eq=False)
class MarkExecutionRequested:
    """Execution was requested for these tasks (no event: nothing visible changes yet)."""

    task_ids: list[str]
    root_id: str
    events: list[Event] = field(default_factory=list)

    @property
    def root_ids(self) -> tuple[str, ...]:
        return (self.root_id,)


@dataclass(slots=True, eq=False)
class UpdateFields:
    """UpdateTask's changed columns of a task that is still pending."""

    task_id: str
    columns: dict[str, Any]
    root_id: str
    events: list[Event] = field(default_factory=list)

    @property
    def root_ids(self) -> tuple[str, ...]:
        return (self.root_id,)


@dataclass(slots=True, eq=False)
class DeleteTasks:
    """A pending subtree and its `deleted` events; `parent_id` loses `has_children` when
    nothing is left under it."""

    task_ids: list[str]
    parent_id: str | None
    events: list[Event]
    root_id: str

    @property
    def root_ids(self) -> tuple[str, ...]:
        return (self.root_id,)


@dataclass(slots=True, eq=False)
class StoreResponse:
    """The answer to an idempotent request, kept for its `request_id`."""

    request_id: str
    method: str
    request_hash: str
    response: bytes
    created_us: int
    events: list[Event] = field(default_factory=list)
    root_ids: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class PruneHistory:
    """Delete the events of trees finished before `events_before_us` (remembering how far
    each tree's history was pruned) and request ids stored before `keys_before_us`."""

    events_before_us: int
    keys_before_us: int
    events: list[Event] = field(default_factory=list)
    root_ids: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class SaveRemoteExecutor:
    """Remember (or update) an executor that a worker registered."""

    executor: RemoteExecutorRow
    update_us: int
    events: list[Event] = field(default_factory=list)
    root_ids: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class AppendTaskLog:
    """Lines an attempt logged; with `keep_from`, the attempt's lines before that
    sequence are cut (the log's cap). `fresh`: the first lines of a run of the attempt,
    replacing what an earlier run of it left (a run handed back by a stopping server or
    worker does not count: its attempt runs again). Names no tree: a refused one reloads
    nothing."""

    task_id: str
    attempt: int
    lines: list[LogLineRow]
    keep_from: int | None = None
    fresh: bool = False
    events: list[Event] = field(default_factory=list)
    root_ids: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class ReleaseTree:
    """Let go of a tree's lease (replicas on PostgreSQL), only under the token held.
    Queued after the tree's last changes, so they commit first (or together)."""

    root_id: str
    token: int
    handover: bool = False
    """The tree still has work (this replica stops): its lease expires at once, so that
    another replica's sweep takes it over; otherwise nobody holds it any more."""
    to: str = ""
    """The replica the lease goes to, which adopts the tree (it has the workers the
    tree waits for); overrides `handover`."""
    events: list[Event] = field(default_factory=list)

    @property
    def root_ids(self) -> tuple[str, ...]:
        return ()  # never fenced: releasing a tree held elsewhere changes nothing


Write = (
    InsertTasks
    | UpdateState
    | MarkExecutionRequested
    | UpdateFields
    | DeleteTasks
    | StoreResponse
    | PruneHistory
    | SaveRemoteExecutor
    | AppendTaskLog
    | ReleaseTree
)


@dataclass(slots=True)
class Applied:
    """What one transaction did: the writes whose guarded update the database refused
    (their events were not stored either)."""

    rejected: set[int] = field(default_factory=set)
    """Indexes (into the committed writes) of refused guarded updates."""
    fenced: set[int] = field(default_factory=set)
    """Indexes of writes to trees another replica took over (nothing of them stored)."""
    lost: set[str] = field(default_factory=set)
    """The roots of those trees."""
    last_sequence: int = 0
    """The highest sequence this transaction gave its stored events (0: it stored none).
    The events themselves carry their numbers, set inside the transaction."""
