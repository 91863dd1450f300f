"""The tutorial-facing API: `create_session`, `TaskManager`, its `task_repository`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from taskgrove._client import AsyncClient
from taskgrove._models import Snapshot, Task, TaskEvent
from taskgrove._tree import TaskTreeNode
from taskgrove.domain import statuses


class Session:
    """A connection to a taskgrove server (connects on first use)."""

    def __init__(self, address: str | None = None, **settings: Any) -> None:
        self.client = AsyncClient(address, **settings)

    @property
    def address(self) -> str:
        return self.client.address

    async def close(self) -> None:
        await self.client.close()


def create_session(address: str | None = None, **settings: Any) -> Session:
    """A session with the server at `address`, else $TASKGROVE_ADDRESS, else 127.0.0.1:50051
    (`settings`: `ClientConfig` fields, e.g. `token=...`, or `config=ClientConfig(...)`)."""
    return Session(address, **settings)


class TaskRepository:
    """Task storage as the tutorial uses it; every call goes to the server."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create_task(self, *, name: str, **fields: Any) -> Task:
        """Create a task: `name`, `user_id`, `parent_id`, `priority`, `inputs`, `params`,
        `dependencies` ([{"id": ..., "required": True}]), `executor`, `max_attempts`,
        `retry_backoff`, `timeout`. Raises `NotFoundError` (reason PARENT_NOT_FOUND) for an
        unknown parent, `InvalidArgumentError` for invalid input."""
        return await self._client.create_task(name=name, **fields)

    async def get_task_by_id(self, task_id: str) -> Task:
        return await self._client.get_task(task_id)


class TaskManager:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.client = session.client
        self.task_repository = TaskRepository(self.client)

    async def distribute_task_tree(
        self, root: TaskTreeNode, *, on_event: Callable[[TaskEvent], None] | None = None
    ) -> TaskTreeNode:
        """Execute the root's task with its whole subtree on the server and wait, on the
        event stream, until every task of the subtree has finished. Nodes are updated as
        events arrive (`on_event` sees each one); at the end every node is refreshed and
        children the server knows of but the local tree lacks are added (the server's
        tree is the truth)."""
        top_id = root.task.id
        tree_root = root.task.root_id or (await self.client.get_task(top_id)).root_id
        nodes = {node.task.id: node for node in root.walk()}
        tracker: _SubtreeTracker | None = None
        stream = self.client.watch(root_id=tree_root, include_snapshot=True)
        try:
            async for item in stream:
                if isinstance(item, Snapshot):
                    tracker = _SubtreeTracker(top_id, item.tasks)
                    # Executing after the snapshot: no event of this run can be missed.
                    await self.client.execute_task(top_id)
                else:
                    assert tracker is not None
                    tracker.apply(item)
                    node = nodes.get(item.task_id)
                    if node is not None and item.type in ("status_changed", "progress"):
                        node.task = replace(
                            node.task,
                            status=item.status,
                            progress=item.progress,
                            progress_message=item.progress_message,
                            attempt=item.attempt,
                            error=item.error,
                        )
                    if on_event is not None:
                        on_event(item)
                if tracker is not None and tracker.done:
                    break
        finally:
            await stream.aclose()
        await self.refresh(root)
        return root

    async def refresh(self, root: TaskTreeNode) -> None:
        """Bring every node of `root`'s subtree up to date with the server."""
        tasks = await self.client.get_task_tree(root.task.id)
        nodes = {node.task.id: node for node in root.walk()}
        for task in tasks:
            node = nodes.get(task.id)
            if node is None:
                node = TaskTreeNode(task)
                nodes[task.id] = node
                parent = nodes.get(task.parent_id or "")
                if parent is not None:
                    parent.add_child(node)
            else:
                node.task = task


class _SubtreeTracker:
    """Counts the unfinished tasks of one subtree, from a snapshot and then events."""

    def __init__(self, top_id: str, tasks: Iterable[Task]) -> None:
        children: dict[str | None, list[Task]] = {}
        by_id = {}
        for task in tasks:
            by_id[task.id] = task
            children.setdefault(task.parent_id, []).append(task)
        self._status: dict[str, str] = {}
        stack = [by_id[top_id]] if top_id in by_id else []
        while stack:
            task = stack.pop()
            self._status[task.id] = task.status
            stack.extend(children.get(task.id, ()))
        self.unfinished = sum(1 for s in self._status.values() if s not in statuses.TERMINAL)

    @property
    def done(self) -> bool:
        return self.unfinished == 0

    def apply(self, event: TaskEvent) -> None:
        # Tasks created after the run started were not executed by it: not waited for.
        old = self._status.get(event.task_id)
        if old is None or event.type != "status_changed":
            return
        self._status[event.task_id] = event.status
        self.unfinished += (old in statuses.TERMINAL) - (event.status in statuses.TERMINAL)
