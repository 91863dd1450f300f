"""What the engine and the use-cases read from storage: the `TaskReads` interface, with
`SqlReads` (repository.py) and `MemoryStore` (memory.py) behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from taskgrove.domain.aggregation import ProgressInput

from taskgrove_server.storage.records import (
    LogLineRow,
    RemoteExecutorRow,
    StoredResponse,
    TaskLinks,
    TaskRow,
)


@dataclass(slots=True)
class ListFilter:
    statuses: Sequence[str] = ()
    parent_id: str | None = None
    roots_only: bool = False
    user_id: str | None = None
    after_seq: int = 0
    """Only tasks that come after this insertion order in the listing's order (a page
    token's key; 0: from the start)."""
    limit: int = 100
    newest_first: bool = False
    """Newest first (descending insertion order, which is creation order)."""
    name_contains: str = ""
    """Only tasks whose name contains this, ignoring case; taken literally ("" : every
    name)."""


@dataclass(slots=True)
class Referenced:
    """What creating tasks under a stored parent needs to read (see `TaskReads.referenced`)."""

    rows: dict[str, TaskLinks]
    """The parent and the dependencies that exist, by id."""
    lineage: list[str]
    """The parent's id and its ancestors' up to the root (empty: no such parent)."""
    waiting: set[str]
    """The stored tasks that could not finish before a task newly created under the parent
    does: the groups above it and, transitively, whatever waits for one of them (a
    dependency on a group waits for its subtree). A new task depending on one of these
    would close a cycle; nothing else stored can (nothing stored depends on a new task).
    Empty when no dependencies were given."""


class TaskReads(Protocol):
    async def get(self, task_id: str) -> TaskRow | None: ...

    async def get_many(self, ids: Iterable[str]) -> dict[str, TaskRow]:
        """The stored tasks among `ids`, by id."""
        ...

    async def children_of(self, ids: Iterable[str]) -> dict[str, list[str]]:
        """Child ids of each given task, in creation order."""
        ...

    async def dependents_of(self, ids: Iterable[str]) -> list[tuple[str, str]]:
        """(dependent id, dependency id) for every task depending on one of `ids`."""
        ...

    async def lineage(self, task_id: str) -> list[TaskRow]:
        """The task and its ancestors, up to its root (empty when it does not exist)."""
        ...

    async def referenced(self, parent_id: str, ids: Collection[str]) -> Referenced:
        """What creating tasks under `parent_id` that depend on `ids` needs, in one read."""
        ...

    async def subtree(self, task_id: str, max_depth: int = 0) -> list[TaskRow]:
        """The task and its descendants (down to `max_depth` levels, 0 = all), parents
        before children, siblings in creation order."""
        ...

    async def progress_inputs(self, task_id: str, *, root: bool = False) -> list[ProgressInput]:
        """What `group_progress` needs of each task of a subtree, parents first; `root`:
        `task_id` is a root (its subtree is its whole tree)."""
        ...

    def tree(self, root_id: str, chunk: int = 2000) -> AsyncIterator[list[TaskRow]]:
        """Every task of one tree in creation order, `chunk` rows at a time (a large tree
        is never all in memory as rows)."""
        ...

    async def list_tasks(self, flt: ListFilter) -> list[TaskRow]: ...

    async def active_roots(self) -> list[str]:
        """Roots of trees with executing tasks that have not finished."""
        ...

    async def stored_response(self, request_id: str) -> StoredResponse | None: ...

    async def remote_executors(self) -> list[RemoteExecutorRow]:
        """Every executor workers registered, by id."""
        ...

    async def task_log(
        self, task_id: str, attempt: int, after_sequence: int = 0
    ) -> list[LogLineRow]:
        """The stored lines of one attempt after `after_sequence`, in order."""
        ...

    async def close(self) -> None: ...


class _Linked(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def parent_id(self) -> str | None: ...


L = TypeVar("L", bound=_Linked)


def preorder(rows: Sequence[L], top_id: str) -> list[L]:
    """Order rows parents-before-children, siblings by creation, starting at `top_id`."""
    by_parent: dict[str | None, list[L]] = {}
    top: L | None = None
    for row in rows:
        if row.id == top_id:
            top = row
        else:
            by_parent.setdefault(row.parent_id, []).append(row)
    if top is None:
        return []
    ordered: list[L] = []
    stack = [top]
    while stack:
        row = stack.pop()
        ordered.append(row)
        stack.extend(reversed(by_parent.get(row.id, ())))
    return ordered
