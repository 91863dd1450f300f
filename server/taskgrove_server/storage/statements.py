"""Write statements queued on the `Writer` besides inserts and state updates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, func, insert, select, update
from taskgrove import statuses

from taskgrove_server.clock import now_us
from taskgrove_server.storage.schema import task_dependencies, tasks
from taskgrove_server.storage.writer import Statement, dependency_edges

if TYPE_CHECKING:
    from taskgrove_server.engine.changes import TaskChanges
    from taskgrove_server.engine.node import Node


def mark_has_children(parent_id: str) -> Statement:
    def run(conn: Connection) -> None:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == parent_id, tasks.c.has_children.is_(False))
            .values(has_children=True)
        )

    return run


def mark_execution_requested(ids: list[str]) -> Statement:
    def run(conn: Connection) -> None:
        for start in range(0, len(ids), 500):
            conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(ids[start : start + 500]))
                .values(execution_requested=True, version=tasks.c.version + 1)
            )

    return run


def update_task_fields(node: Node, changes: TaskChanges) -> Statement:
    """Store an UpdateTask (guarded: the task is still pending) and re-index dependencies."""
    columns = changes.columns()
    values = {**columns, "updated_us": now_us(), "version": tasks.c.version + 1}
    task_id = node.id
    edges = (
        dependency_edges([{"id": task_id, "dependencies": columns["dependencies"]}])
        if "dependencies" in columns
        else None
    )

    def run(conn: Connection) -> None:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.status == statuses.PENDING)
            .values(**values)
        )
        if edges is not None:
            conn.execute(delete(task_dependencies).where(task_dependencies.c.task_id == task_id))
            if edges:
                conn.execute(insert(task_dependencies), edges)

    return run


def delete_tasks(ids: list[str], parent_id: str | None) -> Statement:
    """Delete a pending subtree (with its dependency index rows); the parent loses its
    `has_children` when nothing is left under it."""

    def run(conn: Connection) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            conn.execute(delete(task_dependencies).where(task_dependencies.c.task_id.in_(chunk)))
            conn.execute(
                delete(tasks).where(tasks.c.id.in_(chunk), tasks.c.status == statuses.PENDING)
            )
        if parent_id is not None:
            remaining = conn.scalar(
                select(func.count()).select_from(tasks).where(tasks.c.parent_id == parent_id)
            )
            if not remaining:
                conn.execute(
                    update(tasks).where(tasks.c.id == parent_id).values(has_children=False)
                )

    return run
