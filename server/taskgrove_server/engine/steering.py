"""Operations that steer runs: cancel, retry, update, delete, explain.

Each loads (and pins) the trees it needs, decides in memory, queues its writes, and
answers once they are committed.
"""

from __future__ import annotations

from collections.abc import Callable

from taskgrove.domain import reasons, statuses

from taskgrove_server.clock import now_us
from taskgrove_server.engine.changes import TaskChanges
from taskgrove_server.engine.explain import Explanation, WaitingOn, explain
from taskgrove_server.engine.node import Node
from taskgrove_server.engine.ready_queue import ReadyQueue
from taskgrove_server.engine.runner import AttemptRunner
from taskgrove_server.engine.transitions import Transitions, failure
from taskgrove_server.engine.tree_cache import TreeCache
from taskgrove_server.engine.waiting import DependencyWaits
from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.events.event import DELETED
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import DeleteTasks, UpdateFields


class Steering:
    def __init__(
        self,
        cache: TreeCache,
        transitions: Transitions,
        waits: DependencyWaits,
        queue: ReadyQueue,
        runner: AttemptRunner,
        reads: TaskReads,
        writer: Writer,
        settle: Callable[[], None],
    ) -> None:
        self._cache = cache
        self._transitions = transitions
        self._waits = waits
        self._queue = queue
        self._runner = runner
        self._reads = reads
        self._writer = writer
        self._settle = settle

    async def cancel(self, task_id: str, root_id: str) -> list[str]:
        """Cancel the task and every unfinished task below it; returns what it cancelled."""
        async with self._cache.pinned([root_id]):
            cancelled = []
            for node in self._cache[task_id].subtree():
                if node.is_group or node.status in statuses.TERMINAL:
                    continue
                running = node.status == statuses.IN_PROGRESS
                self._transitions.finish(
                    node,
                    statuses.CANCELLED,
                    error=failure(reasons.CANCELLED, "cancelled by request"),
                )
                cancelled.append(node.id)
                if running:
                    self._runner.cancel(node.id)
            self._settle()
        await self._writer.flush()
        return cancelled

    async def retry(self, task_id: str, root_id: str) -> list[str]:
        """Set a failed or cancelled task back to pending, with its failed or cancelled
        descendants and every dependent that failed or was cancelled because of them,
        and run them again (each attempt numbered on from the last)."""
        async with self._cache.pinned([root_id]) as pin:
            top = self._cache[task_id]
            if top.status not in (statuses.FAILED, statuses.CANCELLED):
                raise ServiceError(
                    Code.FAILED_PRECONDITION,
                    reasons.TASK_NOT_RETRYABLE,
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
                edges = await self._reads.dependents_of(frontier)
                candidates = {dependent for dependent, _ in edges} - set(chosen)
                rows = await self._reads.get_many(candidates)
                await pin.add({row.root_id for row in rows.values()})
                frontier = set()
                for candidate_id in candidates:
                    node = self._cache.get(candidate_id)
                    if node is not None and _failed_because_of(node, causes):
                        chosen[node.id] = node
                        new_causes = {node.id} | {a.id for a in node.ancestors()}
                        frontier |= new_causes - causes
                        causes |= new_causes
            retried = [
                n for n in chosen.values() if n.status in (statuses.FAILED, statuses.CANCELLED)
            ]
            # `causes`: the retried tasks and the groups above them (which reopen).
            await self._refuse_unmet_dependencies(retried, causes)
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
                            self._transitions.persist(group, group.status, None)
                tree = self._cache.tree(node.root_id)
                assert tree is not None
                tree.active += 1
                self._transitions.set_status(node, statuses.PENDING)
            await self._waits.arm(retried)
            for node in retried:
                self._cache.touch(node.root_id)
            self._settle()
        await self._writer.flush()
        return [node.id for node in retried]

    async def _refuse_unmet_dependencies(self, retried: list[Node], rerun: set[str]) -> None:
        """A retried task whose required dependency failed or was cancelled, and does not
        run again with it (`rerun`: the retried tasks and the groups above them), would
        only end DEPENDENCY_FAILED/CANCELLED again: refused, naming the dependency, before
        anything changes."""
        wanted = {
            dep_id: node
            for node in retried
            for dep_id, required in node.dependencies.items()
            if required and dep_id not in rerun
        }
        if not wanted:
            return
        rows = await self._reads.get_many(list(wanted))
        for dep_id, node in wanted.items():
            held = self._cache.get(dep_id)
            status = (
                held.status if held is not None else rows[dep_id].status if dep_id in rows else None
            )
            if status in (statuses.FAILED, statuses.CANCELLED):
                raise ServiceError(
                    Code.FAILED_PRECONDITION,
                    reasons.TASK_NOT_RETRYABLE,
                    f"task {node.id} ({node.name}) needs {dep_id}, which is {status} and "
                    "would not run again: retry that task (or a group holding both) instead",
                    metadata={"task_id": node.id, "dependency_id": dep_id},
                )

    async def update(
        self, task_id: str, root_id: str, changes: TaskChanges, expected_etag: str
    ) -> None:
        """Apply validated changes to a pending task (ABORTED when the etag moved on)."""
        async with self._cache.pinned([root_id]):
            node = self._cache[task_id]
            _check_etag(node, expected_etag)
            if node.status != statuses.PENDING or node.retry_at_us is not None:
                state = (
                    f"waiting to retry after attempt {node.attempt}"
                    if node.status == statuses.PENDING
                    else node.status
                )
                raise ServiceError(
                    Code.FAILED_PRECONDITION,
                    reasons.TASK_NOT_PENDING,
                    f"task {task_id} is {state}; only tasks that have not started can be updated",
                )
            changes.apply(node)
            columns = {**changes.columns(), "updated_us": now_us()}
            self._writer.queue(UpdateFields(node.id, columns, root_id))
            node.version += 1
            if node.execution_requested and not node.is_group:
                if changes.dependencies is not None:
                    await self._waits.arm([node])
                elif not node.waiting:
                    self._queue.push(node)  # priority may have changed; stale entries skip
            self._settle()
        await self._writer.flush()

    async def delete(self, task_id: str, root_id: str, expected_etag: str) -> list[str]:
        """Delete a pending subtree that nothing outside it depends on."""
        async with self._cache.pinned([root_id]):
            top = self._cache[task_id]
            _check_etag(top, expected_etag)
            doomed = list(top.subtree())
            busy = [n.id for n in doomed if not n.is_group and n.status != statuses.PENDING]
            if busy:
                raise ServiceError(
                    Code.FAILED_PRECONDITION,
                    reasons.TASK_NOT_PENDING,
                    f"only pending subtrees can be deleted; not pending: {', '.join(busy[:10])}",
                    metadata={"task_ids": ",".join(busy[:100])},
                )
            ids = {node.id for node in doomed}
            outside = sorted(
                {
                    dependent
                    for dependent, _ in await self._reads.dependents_of(ids)
                    if dependent not in ids
                }
            )
            if outside:
                raise ServiceError(
                    Code.FAILED_PRECONDITION,
                    reasons.HAS_DEPENDENTS,
                    f"other tasks depend on this subtree: {', '.join(outside[:10])}",
                    metadata={"dependent_ids": ",".join(outside[:100])},
                )
            self._remove(top, doomed)
            self._settle()
        await self._writer.flush()
        return [node.id for node in doomed]

    def _remove(self, top: Node, doomed: list[Node]) -> None:
        """Forget a deleted subtree and queue its deletion with `deleted` events."""
        tree = self._cache.tree(top.root_id)
        assert tree is not None
        for node in doomed:
            if not node.is_group:
                if node.execution_requested:
                    tree.active -= 1
                for ancestor in top.ancestors():
                    if ancestor.counts is not None:
                        ancestor.counts.add(node.status, -1)
                        ancestor.progress_total -= node.contribution
        events = [node.event(DELETED, node.status) for node in doomed]
        parent = top.parent
        if parent is not None:
            parent.children.remove(top)
        self._writer.queue(
            DeleteTasks(
                [node.id for node in doomed], parent.id if parent else None, events, top.root_id
            )
        )
        self._cache.remove(tree, doomed)
        if parent is not None:
            for ancestor in top.ancestors():
                if ancestor.is_group:
                    self._transitions.refresh_group(ancestor)
        self._cache.touch(top.root_id)

    async def explain(self, task_id: str, root_id: str) -> Explanation:
        async with self._cache.pinned([root_id]):
            node = self._cache[task_id]
            outside = [d for d in node.dependencies if self._cache.get(d) is None]
            rows = await self._reads.get_many(outside)
            waiting = []
            for dep_id, required in node.dependencies.items():
                dep = self._cache.get(dep_id)
                row = rows.get(dep_id)
                status = dep.status if dep else (row.status if row else None)
                if status is None or status in statuses.TERMINAL:
                    continue
                waiting.append(
                    WaitingOn(
                        id=dep_id,
                        name=dep.name if dep else row.name if row else "",
                        status=status,
                        required=required,
                        execution_requested=dep.execution_requested
                        if dep
                        else bool(row and row.execution_requested),
                    )
                )
            executor = node.executor or ""
            gate = self._queue.gate
            workers = (
                gate.capacity(executor) if gate is not None and gate.is_remote(executor) else None
            )
            return explain(
                node,
                waiting,
                queue_position=self._queue.position(node),
                running=self._queue.running,
                limit=self._queue.limit,
                executor_running=self._queue.executor_running(executor),
                executor_limit=self._queue.executor_limits.get(executor),
                workers=workers,
            )


def _check_etag(node: Node, expected_etag: str) -> None:
    if expected_etag and expected_etag != str(node.version):
        raise ServiceError(
            Code.ABORTED,
            reasons.ETAG_MISMATCH,
            f"task {node.id} changed (etag {node.version}, request had {expected_etag}); "
            "read it again",
            metadata={"etag": str(node.version)},
        )


def _failed_because_of(node: Node, causes: set[str]) -> bool:
    error = node.error or {}
    details = error.get("details") or {}
    return (
        node.status in (statuses.FAILED, statuses.CANCELLED)
        and error.get("reason") in (reasons.DEPENDENCY_FAILED, reasons.DEPENDENCY_CANCELLED)
        and details.get("dependency_id") in causes
    )
