"""The engine's operations that steer runs: cancel, retry, update, delete, explain.

Each loads (and pins) the trees it needs, decides in memory, queues its writes, and
answers once they are committed.
"""

from __future__ import annotations

from taskgrove import statuses

from taskgrove_server.engine.attempt import failure
from taskgrove_server.engine.changes import TaskChanges
from taskgrove_server.engine.core import EngineCore
from taskgrove_server.engine.explain import Explanation, WaitingOn, explain
from taskgrove_server.engine.node import Node
from taskgrove_server.errors import Code, TaskgroveError
from taskgrove_server.events import event as events
from taskgrove_server.storage.statements import delete_tasks, update_task_fields


class Engine(EngineCore):
    async def cancel(self, task_id: str, root_id: str) -> list[str]:
        """Cancel the task and every unfinished task below it; returns what it cancelled."""
        async with self._pinned([root_id]):
            top = self._nodes[task_id]
            cancelled = []
            for node in top.subtree():
                if node.is_group or node.status in statuses.TERMINAL:
                    continue
                running = node.status == statuses.IN_PROGRESS
                self._finish(
                    node,
                    statuses.CANCELLED,
                    error=failure("CANCELLED", "cancelled by request"),
                )
                cancelled.append(node.id)
                attempt = self._attempts.get(node.id)
                if running and attempt is not None:
                    attempt.cancel()
            self._settle()
        await self._writer.flush()
        return cancelled

    async def retry(self, task_id: str, root_id: str) -> list[str]:
        """Set a failed or cancelled task back to pending, with its failed or cancelled
        descendants and every dependent that failed or was cancelled because of them,
        and run them again (each attempt numbered on from the last)."""
        async with self._pinned([root_id]) as pin:
            top = self._nodes[task_id]
            if top.status not in (statuses.FAILED, statuses.CANCELLED):
                raise TaskgroveError(
                    Code.FAILED_PRECONDITION,
                    "TASK_NOT_RETRYABLE",
                    f"task {task_id} is {top.status}; only failed or cancelled tasks are retried",
                )
            chosen = {
                node.id: node
                for node in top.subtree()
                if not node.is_group and node.status in (statuses.FAILED, statuses.CANCELLED)
            }
            # Dependents anywhere that failed because of a chosen task (or of a group
            # that failed because of one), found through the reverse dependency index.
            causes = set(chosen) | {a.id for n in chosen.values() for a in n.ancestors()}
            frontier = set(causes)
            while frontier:
                edges = await self._repository.dependents_of(frontier)
                candidates = {dependent for dependent, _ in edges} - set(chosen)
                rows = await self._repository.get_many(candidates)
                await pin.add({row["root_id"] for row in rows.values()})
                frontier = set()
                for candidate_id in candidates:
                    node = self._nodes.get(candidate_id)
                    if node is not None and _failed_because_of(node, causes):
                        chosen[node.id] = node
                        new_causes = {node.id} | {a.id for a in node.ancestors()}
                        frontier |= new_causes - causes
                        causes |= new_causes
            retried = [
                n for n in chosen.values() if n.status in (statuses.FAILED, statuses.CANCELLED)
            ]
            for node in retried:
                node.error = None
                node.result = None
                node.progress = 0.0
                node.progress_message = ""
                node.ended_us = None
                node.retry_at_us = None
                if not node.execution_requested:
                    node.execution_requested = True
                    for group in node.ancestors():
                        if group.is_group and not group.execution_requested:
                            group.execution_requested = True
                            self._persist(group, group.status, None)
                self._trees[node.root_id].active += 1
                self._set_status(node, statuses.PENDING)
            await self._arm(retried)
            self._touched_trees.update(node.root_id for node in retried)
            self._settle()
        await self._writer.flush()
        return [node.id for node in retried]

    async def update(
        self, task_id: str, root_id: str, changes: TaskChanges, expected_etag: str
    ) -> None:
        """Apply validated changes to a pending task (ABORTED when the etag moved on)."""
        async with self._pinned([root_id]):
            node = self._nodes[task_id]
            self._check_etag(node, expected_etag)
            if node.status != statuses.PENDING or node.retry_at_us is not None:
                raise TaskgroveError(
                    Code.FAILED_PRECONDITION,
                    "TASK_NOT_PENDING",
                    f"task {task_id} is {node.status}; only pending tasks can be updated",
                )
            dependencies_changed = changes.dependencies is not None
            changes.apply(node)
            self._writer.execute(update_task_fields(node, changes))
            node.version += 1
            if dependencies_changed and node.execution_requested and not node.is_group:
                await self._arm([node])
            elif node.execution_requested and not node.waiting and not node.is_group:
                self._push_ready(node)  # priority may have changed; stale entries are skipped
            self._settle()
        await self._writer.flush()

    async def delete(self, task_id: str, root_id: str, expected_etag: str) -> list[str]:
        """Delete a pending subtree that nothing outside it depends on."""
        async with self._pinned([root_id]):
            top = self._nodes[task_id]
            self._check_etag(top, expected_etag)
            doomed = list(top.subtree())
            busy = [n.id for n in doomed if not n.is_group and n.status != statuses.PENDING]
            if busy:
                raise TaskgroveError(
                    Code.FAILED_PRECONDITION,
                    "TASK_NOT_PENDING",
                    f"only pending subtrees can be deleted; not pending: {', '.join(busy[:10])}",
                    metadata={"task_ids": ",".join(busy[:100])},
                )
            ids = {node.id for node in doomed}
            outside = sorted(
                {
                    dependent
                    for dependent, _ in await self._repository.dependents_of(ids)
                    if dependent not in ids
                }
            )
            if outside:
                raise TaskgroveError(
                    Code.FAILED_PRECONDITION,
                    "HAS_DEPENDENTS",
                    f"other tasks depend on this subtree: {', '.join(outside[:10])}",
                    metadata={"dependent_ids": ",".join(outside[:100])},
                )
            self._remove(top, doomed)
            self._settle()
        await self._writer.flush()
        return [node.id for node in doomed]

    async def explain(self, task_id: str, root_id: str) -> Explanation:
        async with self._pinned([root_id]):
            node = self._nodes[task_id]
            pending_deps = [d for d in node.dependencies if d not in self._nodes]
            rows = await self._repository.get_many(pending_deps)
            waiting = []
            for dep_id, required in node.dependencies.items():
                dep = self._nodes.get(dep_id)
                row = rows.get(dep_id)
                status = dep.status if dep else (row["status"] if row else None)
                if status is None or status in statuses.TERMINAL:
                    continue
                waiting.append(
                    WaitingOn(
                        id=dep_id,
                        name=dep.name if dep else row["name"] if row else "",
                        status=status,
                        required=required,
                        execution_requested=dep.execution_requested
                        if dep
                        else bool(row and row["execution_requested"]),
                    )
                )
            key = (node.priority, node.id)
            ahead = len(
                {
                    other_id
                    for priority, other_id, other in self._ready
                    if (priority, other_id) < key
                    and priority == other.priority  # not a stale entry
                    and other.status == statuses.PENDING
                    and not other.waiting
                    and other.retry_at_us is None
                }
            )
            executor = node.executor or ""
            return explain(
                node,
                waiting,
                queue_position=ahead + 1,
                running=self._running,
                limit=self._limit,
                executor_running=self._running_by_executor.get(executor, 0),
                executor_limit=self._executor_limits.get(executor),
            )

    def _check_etag(self, node: Node, expected_etag: str) -> None:
        if expected_etag and expected_etag != str(node.version):
            raise TaskgroveError(
                Code.ABORTED,
                "ETAG_MISMATCH",
                f"task {node.id} changed (etag {node.version}, request had {expected_etag}); "
                "read it again",
                metadata={"etag": str(node.version)},
            )

    def _remove(self, top: Node, doomed: list[Node]) -> None:
        """Forget a deleted subtree and queue its deletion with `deleted` events."""
        tree = self._trees[top.root_id]
        gone = {node.id for node in doomed}
        deleted_events = []
        for node in doomed:
            if not node.is_group:
                if node.execution_requested:
                    tree.active -= 1
                for ancestor in top.ancestors():
                    if ancestor.counts is not None:
                        ancestor.counts.add(node.status, -1)
                        ancestor.progress_total -= node.contribution
            deleted_events.append(node.event(events.DELETED, node.status))
            self._nodes.pop(node.id, None)
            node.status = statuses.CANCELLED  # any stale ready-queue entry is skipped
        tree.nodes = [node for node in tree.nodes if node.id not in gone]
        parent = top.parent
        if parent is not None:
            parent.children.remove(top)
        self._writer.execute(delete_tasks(sorted(gone), parent.id if parent else None))
        self._writer.append_events(deleted_events)
        if parent is None:
            del self._trees[top.root_id]
        else:
            for ancestor in top.ancestors():
                if ancestor.is_group:
                    self._refresh_group(ancestor)
        self._touched_trees.add(top.root_id)


def _failed_because_of(node: Node, causes: set[str]) -> bool:
    error = node.error or {}
    details = error.get("details") or {}
    return (
        node.status in (statuses.FAILED, statuses.CANCELLED)
        and error.get("reason") in ("DEPENDENCY_FAILED", "DEPENDENCY_CANCELLED")
        and details.get("dependency_id") in causes
    )
