"""The tutorial-facing API: `create_session`, `TaskManager`, its `task_repository`."""

from __future__ import annotations

from typing import Any

from taskgrove.client import AsyncClient
from taskgrove.models import Task
from taskgrove.tree import TaskTreeNode


class Session:
    """A connection to a taskgrove server (connects on first use)."""

    def __init__(self, address: str | None = None, **client_options: Any) -> None:
        self.client = AsyncClient(address, **client_options)

    @property
    def address(self) -> str:
        return self.client.address

    async def close(self) -> None:
        await self.client.close()


def create_session(address: str | None = None, **client_options: Any) -> Session:
    """A session with the server at `address`, else $TASKGROVE_ADDRESS, else 127.0.0.1:50051."""
    return Session(address, **client_options)


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

    async def distribute_task_tree(self, root: TaskTreeNode) -> TaskTreeNode:
        """Execute the root's task with its whole subtree on the server and wait until it
        has finished; then refresh every node (and add children the server knows of that
        the local tree lacks, since the server's tree is the truth)."""
        await self.client.execute_task(root.task.id)
        await self.client.wait(root.task.id)
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
