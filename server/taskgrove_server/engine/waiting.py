"""Which pending tasks wait for which dependencies, and what a finished one releases.

Dependents are found through an index (dependency id -> waiting nodes), so a finish costs
the number of its dependents, not the size of the tree.
"""

from __future__ import annotations

from collections import defaultdict

from taskgrove.domain import reasons, statuses

from taskgrove_server.engine.node import Node
from taskgrove_server.engine.readiness import Outcome, dependency_outcome
from taskgrove_server.engine.ready_queue import ReadyQueue
from taskgrove_server.engine.transitions import Transitions, failure
from taskgrove_server.engine.tree_cache import TreeCache
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.writer import Writer


class DependencyWaits:
    def __init__(
        self,
        cache: TreeCache,
        transitions: Transitions,
        queue: ReadyQueue,
        reads: TaskReads,
        writer: Writer,
    ) -> None:
        self._cache = cache
        self._transitions = transitions
        self._queue = queue
        self._reads = reads
        self._writer = writer
        self._dependents: dict[str, list[Node]] = defaultdict(list)

    async def arm(self, nodes: list[Node]) -> None:
        """Make pending tasks wait for their unfinished dependencies, queue the ready ones.

        Waiting is registered before statuses are read: a dependency that finishes while
        the read is under way notifies its waiters, and the read itself starts only after
        every change queued so far is committed, so no finish can fall between the two.
        """
        for node in nodes:
            node.waiting = set(node.dependencies)
            for dep_id in node.dependencies:
                self._dependents[dep_id].append(node)
        outside = {dep for n in nodes for dep in n.dependencies if self._cache.get(dep) is None}
        external: dict[str, str] = {}
        if outside:
            await self._writer.flush()
            rows = await self._reads.get_many(outside)
            external = {task_id: row.status for task_id, row in rows.items()}
        settled: set[str] = set()
        for node in nodes:
            if node.status != statuses.PENDING or node.detached:
                continue
            for dep_id in list(node.waiting):
                dep = self._cache.get(dep_id)
                status = dep.status if dep is not None else external.get(dep_id)
                outcome = dependency_outcome(status, required=node.dependencies[dep_id])
                if outcome is Outcome.WAIT:
                    continue
                settled.add(dep_id)
                if outcome is Outcome.SATISFIED:
                    node.waiting.discard(dep_id)
                else:
                    node.waiting.clear()
                    self._fail(node, dep_id, status, outcome)
                    break
            if node.status == statuses.PENDING and not node.waiting and node.retry_at_us is None:
                self._queue.push(node)
        # Drop registrations on dependencies that had already finished.
        for dep_id in settled:
            waiters = [n for n in self._dependents.get(dep_id, ()) if dep_id in n.waiting]
            if waiters:
                self._dependents[dep_id] = waiters
            else:
                self._dependents.pop(dep_id, None)

    def notify(self, finished: Node) -> None:
        """A task finished: release or fail the tasks waiting for it."""
        self.finished(finished.id, finished.status)

    def waits_for(self, task_id: str) -> bool:
        """Whether a task here waits for `task_id` (replicas: a task of a tree held
        elsewhere, whose end arrives as an event)."""
        return task_id in self._dependents

    def finished(self, task_id: str, status: str) -> None:
        """The task `task_id` ended with `status`: release or fail its waiters."""
        for dependent in self._dependents.pop(task_id, ()):
            if (
                dependent.detached
                or dependent.status != statuses.PENDING
                or task_id not in dependent.waiting
            ):
                continue  # let go, moved on, or no longer depends on it (updated)
            required = dependent.dependencies[task_id]
            outcome = dependency_outcome(status, required=required)
            if outcome is Outcome.SATISFIED:
                dependent.waiting.discard(task_id)
                if not dependent.waiting and dependent.retry_at_us is None:
                    self._queue.push(dependent)
            elif outcome is not Outcome.WAIT:
                self._fail(dependent, task_id, status, outcome)

    def _fail(self, node: Node, dep_id: str, dep_status: str | None, outcome: Outcome) -> None:
        if outcome is Outcome.CANCEL:
            self._transitions.finish(
                node,
                statuses.CANCELLED,
                error=failure(
                    reasons.DEPENDENCY_CANCELLED,
                    f"required dependency {dep_id} was cancelled",
                    dependency_id=dep_id,
                ),
            )
            return
        reason = reasons.DEPENDENCY_FAILED if dep_status is not None else reasons.DEPENDENCY_MISSING
        self._transitions.finish(
            node,
            statuses.FAILED,
            error=failure(
                reason,
                f"required dependency {dep_id} {dep_status or 'is missing'}",
                dependency_id=dep_id,
            ),
        )
