"""The execution engine.

The engine keeps every tree with executing tasks in memory (`Node`s), decides every state
change there, single-threaded on the event loop, and queues each change on the `Writer`.
Effects that others can observe happen only after the change is committed: an executor
starts once its claim (pending -> in_progress) is durable.

Cost per task is independent of the tree's size: dependents are found through an index
(dependency id -> waiting nodes), ready tasks wait in a heap ordered by (priority, creation),
and a status change updates the counters of the task's ancestors only (O(depth)).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import random
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskgrove import statuses
from taskgrove.aggregation import StatusCounts, derived_status

from taskgrove_server.clock import now_us
from taskgrove_server.engine.attempt import AttemptOutcome, failure, run_attempt
from taskgrove_server.engine.node import Node
from taskgrove_server.engine.readiness import Outcome, dependency_outcome
from taskgrove_server.events import event as events
from taskgrove_server.executors import ExecutionContext, ExecutorRegistry
from taskgrove_server.storage.repository import TaskRepository
from taskgrove_server.storage.statements import mark_execution_requested, mark_has_children
from taskgrove_server.storage.writer import Writer

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 300.0
_PROGRESS_WRITE_INTERVAL_US = 100_000


@dataclass(slots=True)
class _Tree:
    root: Node
    active: int = 0
    """Executable tasks requested to run that have not finished."""
    nodes: list[Node] = field(default_factory=list)


class EngineCore:
    """Loading, readiness, state changes and dispatch; see `Engine` for the operations
    that steer runs."""

    def __init__(
        self,
        repository: TaskRepository,
        writer: Writer,
        registry: ExecutorRegistry,
        *,
        max_concurrency: int = 256,
        executor_limits: dict[str, int] | None = None,
    ) -> None:
        self._repository = repository
        self._writer = writer
        self._registry = registry
        self._limit = max_concurrency
        self._executor_limits = dict(executor_limits or {})
        self._nodes: dict[str, Node] = {}
        self._trees: dict[str, _Tree] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._adopt_later: dict[str, list[Mapping[Any, Any]]] = defaultdict(list)
        self._dependents: dict[str, list[Node]] = defaultdict(list)
        # (priority, id, node): ids are UUIDv7, so id order is creation order.
        self._ready: list[tuple[int, str, Node]] = []
        self._held: dict[str, list[tuple[int, str, Node]]] = defaultdict(list)
        self._running = 0
        self._running_by_executor: dict[str, int] = defaultdict(int)
        self._attempts: dict[str, asyncio.Task[None]] = {}
        self._finished: deque[Node] = deque()
        self._touched_trees: set[str] = set()
        self._pins: dict[str, int] = defaultdict(int)
        """Trees an operation in progress holds loaded across its awaits."""
        self._closing = False

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Resume every tree that was executing when the server last stopped."""
        for root_id in await self._repository.active_roots():
            await self._ensure_loaded(root_id, recovering=True)
        self._settle()

    async def close(self) -> None:
        """Interrupt running attempts and give them back (pending) for the next start."""
        self._closing = True
        tasks = list(self._attempts.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ----------------------------------------------------------------- queries

    @property
    def running(self) -> int:
        """Attempts claimed or running now."""
        return self._running

    def group_progress(self, task_id: str) -> float | None:
        """A loaded group's progress from memory (None when its tree is not loaded)."""
        node = self._nodes.get(task_id)
        if node is None or not node.is_group:
            return None
        return node.group_progress()

    # ----------------------------------------------------------------- commands

    async def create(
        self,
        rows: Sequence[Mapping[str, Any]],
        existing_parent: str | None,
        *,
        keep_loaded: bool = False,
    ) -> None:
        """Store new tasks (rows parents first) durably and take them into a loaded tree.

        `keep_loaded` (a new tree about to be executed) builds the tree in memory from the
        rows at hand instead of reading it back.
        """
        self._writer.insert_tasks(rows, [events.Event.created(row) for row in rows])
        if existing_parent is not None:
            self._writer.execute(mark_has_children(existing_parent))
        await self._writer.flush()
        root_id = rows[0]["root_id"]
        if root_id in self._loading:
            self._adopt_later[root_id].extend(rows)
        elif root_id in self._trees:
            self._adopt(self._trees[root_id], rows)
            self._settle()
        elif keep_loaded and existing_parent is None:
            self._trees[root_id] = self._build_tree([Node.from_row(row) for row in rows])
            self._touched_trees.add(root_id)
        elif existing_parent is not None and await self._has_started_group(existing_parent):
            # New tasks under a group that already started change its derived status;
            # load the tree so the groups above them are derived again.
            async with self._pinned([root_id]):
                above = {a.id: a for r in rows for a in self._nodes[r["id"]].ancestors()}
                for group in above.values():
                    if group.is_group:
                        self._refresh_group(group)
            self._settle()
            await self._writer.flush()

    async def _has_started_group(self, task_id: str) -> bool:
        """Whether the task or one of its ancestors is a group that is no longer pending."""
        chain = [task_id, *await self._repository.ancestors(task_id)]
        rows = await self._repository.get_many(chain)
        return any(
            row["executor"] is None and row["status"] != statuses.PENDING for row in rows.values()
        )

    async def execute(self, task_id: str, root_id: str) -> int:
        """Request execution of a task's subtree; returns how many tasks it scheduled."""
        await self._ensure_loaded(root_id)
        top = self._nodes[task_id]
        to_arm: list[Node] = []
        flagged: list[str] = []
        groups: list[Node] = []
        for node in top.subtree():
            if node.is_group:
                groups.append(node)
            if node.execution_requested:
                continue
            node.execution_requested = True
            node.version += 1
            flagged.append(node.id)
            if not node.is_group and node.status == statuses.PENDING:
                self._trees[node.root_id].active += 1
                to_arm.append(node)
        # One statement for the flag (no event: nothing a watcher sees changes yet).
        self._writer.execute(mark_execution_requested(flagged))
        await self._arm(to_arm)
        for group in reversed(groups):  # children before parents
            self._refresh_group(group)
        self._touched_trees.add(root_id)
        self._settle()
        await self._writer.flush()
        return len(to_arm)

    @contextlib.asynccontextmanager
    async def _pinned(self, root_ids: Iterable[str]) -> AsyncIterator[_Pin]:
        """Load trees and keep them loaded while an operation awaits."""
        pin = _Pin(self)
        try:
            await pin.add(root_ids)
            yield pin
        finally:
            pin.release()

    # ----------------------------------------------------------------- loading

    async def _ensure_loaded(self, root_id: str, *, recovering: bool = False) -> None:
        while root_id in self._loading:
            await asyncio.shield(self._loading[root_id])
        if root_id in self._trees:
            return
        future = asyncio.get_running_loop().create_future()
        self._loading[root_id] = future
        try:
            # The tree may have been unloaded with its last changes still queued: read it
            # only once they are committed, or the copy would be stale.
            await self._writer.flush()
            nodes = [
                Node.from_row(row) async for rows in self._repository.tree(root_id) for row in rows
            ]
            tree = self._build_tree(nodes)
            self._trees[root_id] = tree
            late = self._adopt_later.pop(root_id, [])
            self._adopt(tree, late)
            to_arm = []
            for node in tree.nodes:
                if node.is_group or not node.execution_requested:
                    continue
                if node.status in statuses.TERMINAL:
                    continue
                tree.active += 1
                if node.status == statuses.IN_PROGRESS and recovering:
                    self._recover(node)
                if node.status == statuses.PENDING:
                    to_arm.append(node)
            await self._arm(to_arm)
            self._touched_trees.add(root_id)
        finally:
            del self._loading[root_id]
            future.set_result(None)

    def _build_tree(self, nodes: list[Node]) -> _Tree:
        root = next(node for node in nodes if node.parent_id is None)
        tree = _Tree(root=root)
        self._link(tree, nodes)
        return tree

    def _link(self, tree: _Tree, nodes: list[Node]) -> None:
        """Attach nodes (parents before children) to a tree and count them into groups."""
        for node in nodes:
            self._nodes[node.id] = node
            tree.nodes.append(node)
            if node.is_group:
                node.counts = StatusCounts()
            if node.parent_id is not None:
                node.parent = self._nodes[node.parent_id]
                node.parent.children.append(node)
            if not node.is_group:
                node.contribution = node.current_contribution()
                for ancestor in node.ancestors():
                    if ancestor.counts is not None:
                        ancestor.counts.add(node.status)
                        ancestor.progress_total += node.contribution

    def _adopt(self, tree: _Tree, rows: Sequence[Mapping[Any, Any]]) -> None:
        """Tasks created under a loaded tree: they join it (creation never runs them)."""
        fresh = [Node.from_row(row) for row in rows if row["id"] not in self._nodes]
        if not fresh:
            return
        self._link(tree, fresh)
        for node in fresh:
            for ancestor in node.ancestors():
                if ancestor.is_group:
                    self._refresh_group(ancestor)

    def _recover(self, node: Node) -> None:
        """An attempt that was running when the server died: retry it or abandon it."""
        if node.attempt < node.max_attempts:
            node.status = statuses.PENDING
            self._persist(node, statuses.IN_PROGRESS, events.STATUS_CHANGED)
            self._adjust_ancestors(node, statuses.IN_PROGRESS)
        else:
            self._finish(
                node,
                statuses.FAILED,
                error=failure("ABANDONED", "the server stopped while the task ran"),
                expected=statuses.IN_PROGRESS,
            )

    def _unload(self, tree: _Tree) -> None:
        for node in tree.nodes:
            self._nodes.pop(node.id, None)
        del self._trees[tree.root.id]

    async def _arm(self, nodes: list[Node]) -> None:
        """Make pending tasks wait for their unfinished dependencies, queue the ready ones.

        Waiting is registered before statuses are read: a dependency that finishes while
        the read is under way notifies its waiters, and the read itself starts only after
        every change queued so far is committed, so no finish can fall between the two.
        """
        for node in nodes:
            node.waiting = set(node.dependencies)
            for dep_id in node.dependencies:
                self._dependents[dep_id].append(node)
        outside = {dep for n in nodes for dep in n.dependencies if dep not in self._nodes}
        external: dict[str, str] = {}
        if outside:
            await self._writer.flush()
            rows = await self._repository.get_many(outside)
            external = {task_id: row["status"] for task_id, row in rows.items()}
        settled: set[str] = set()
        for node in nodes:
            if node.status != statuses.PENDING:
                continue
            for dep_id in list(node.waiting):
                dep = self._nodes.get(dep_id)
                status = dep.status if dep is not None else external.get(dep_id)
                outcome = dependency_outcome(status, required=node.dependencies[dep_id])
                if outcome is Outcome.WAIT:
                    continue
                settled.add(dep_id)
                if outcome is Outcome.SATISFIED:
                    node.waiting.discard(dep_id)
                else:
                    node.waiting.clear()
                    self._fail_on_dependency(node, dep_id, status, outcome)
                    break
            if node.status == statuses.PENDING and not node.waiting and node.retry_at_us is None:
                self._push_ready(node)
        # Drop registrations on dependencies that had already finished.
        for dep_id in settled:
            waiters = [n for n in self._dependents.get(dep_id, ()) if dep_id in n.waiting]
            if waiters:
                self._dependents[dep_id] = waiters
            else:
                self._dependents.pop(dep_id, None)

    def _fail_on_dependency(
        self, node: Node, dep_id: str, dep_status: str | None, outcome: Outcome
    ) -> None:
        if outcome is Outcome.CANCEL:
            self._finish(
                node,
                statuses.CANCELLED,
                error=failure(
                    "DEPENDENCY_CANCELLED",
                    f"required dependency {dep_id} was cancelled",
                    dependency_id=dep_id,
                ),
            )
        else:
            reason = "DEPENDENCY_FAILED" if dep_status is not None else "DEPENDENCY_MISSING"
            self._finish(
                node,
                statuses.FAILED,
                error=failure(
                    reason,
                    f"required dependency {dep_id} {dep_status or 'is missing'}",
                    dependency_id=dep_id,
                ),
            )

    def _push_ready(self, node: Node) -> None:
        heapq.heappush(self._ready, (node.priority, node.id, node))

    def _notify_dependents(self, finished: Node) -> None:
        for dependent in self._dependents.pop(finished.id, ()):
            if dependent.status != statuses.PENDING or finished.id not in dependent.waiting:
                continue  # moved on, or no longer depends on it (updated)
            required = dependent.dependencies[finished.id]
            outcome = dependency_outcome(finished.status, required=required)
            if outcome is Outcome.SATISFIED:
                dependent.waiting.discard(finished.id)
                if not dependent.waiting and dependent.retry_at_us is None:
                    self._push_ready(dependent)
            elif outcome is not Outcome.WAIT:
                self._fail_on_dependency(dependent, finished.id, finished.status, outcome)

    # ----------------------------------------------------------------- state changes

    def _persist(self, node: Node, expected: str, event_type: str | None) -> None:
        event = node.event(event_type, expected) if event_type is not None else None
        self._writer.update_state(node.state_row(expected), event)
        node.version += 1

    def _set_status(self, node: Node, status: str, *, expected: str | None = None) -> None:
        old = node.status
        node.status = status
        now = now_us()
        if status == statuses.IN_PROGRESS and node.started_us is None:
            node.started_us = now
        if status in statuses.TERMINAL:
            node.ended_us = now
            self._finished.append(node)
            if not node.is_group and node.execution_requested:
                self._trees[node.root_id].active -= 1
                self._touched_trees.add(node.root_id)
        self._persist(node, expected or old, events.STATUS_CHANGED)
        if not node.is_group:
            self._adjust_ancestors(node, old)

    def _finish(
        self,
        node: Node,
        status: str,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        expected: str | None = None,
    ) -> None:
        node.result = result
        node.error = error
        if status == statuses.COMPLETED:
            node.progress = 1.0
        self._set_status(node, status, expected=expected)

    def _adjust_ancestors(self, node: Node, old_status: str) -> None:
        """Carry a task's new status (and progress) into the counters of its groups."""
        contribution = node.current_contribution()
        delta = contribution - node.contribution
        node.contribution = contribution
        for ancestor in node.ancestors():
            if ancestor.counts is not None:
                ancestor.counts.add(old_status, -1)
                ancestor.counts.add(node.status)
                ancestor.progress_total += delta
                self._refresh_group(ancestor)

    def _carry_progress(self, node: Node) -> None:
        contribution = node.current_contribution()
        delta = contribution - node.contribution
        if delta:
            node.contribution = contribution
            for ancestor in node.ancestors():
                ancestor.progress_total += delta

    def _refresh_group(self, group: Node) -> None:
        assert group.counts is not None
        status = derived_status(group.counts, execution_requested=group.execution_requested)
        if status == group.status:
            return
        group.progress = group.group_progress(status)
        if status not in statuses.TERMINAL:
            group.ended_us = None
        self._set_status(group, status)

    def _settle(self) -> None:
        """Propagate finished tasks to their dependents, start what is ready, unload trees."""
        while self._finished:
            self._notify_dependents(self._finished.popleft())
        self._pump()
        for root_id in self._touched_trees:
            tree = self._trees.get(root_id)
            if (
                tree is not None
                and tree.active == 0
                and root_id not in self._loading
                and not self._pins.get(root_id)
            ):
                self._unload(tree)
        self._touched_trees.clear()

    # ----------------------------------------------------------------- dispatch

    def _pump(self) -> None:
        while self._ready and self._running < self._limit and not self._closing:
            entry = heapq.heappop(self._ready)
            node = entry[2]
            if not _still_ready(entry):
                continue
            assert node.executor is not None
            limit = self._executor_limits.get(node.executor)
            if limit is not None and self._running_by_executor[node.executor] >= limit:
                heapq.heappush(self._held[node.executor], entry)
                continue
            node.attempt += 1
            node.error = None
            node.progress = 0.0
            node.progress_message = ""
            self._set_status(node, statuses.IN_PROGRESS)
            self._running += 1
            self._running_by_executor[node.executor] += 1
            self._writer.after_commit(functools.partial(self._launch, node, node.attempt))

    def _launch(self, node: Node, attempt: int) -> None:
        if self._closing:
            self._release(node)
            self._give_back(node, attempt)
            return
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            self._release(node)  # cancelled between its claim and the claim's commit
            self._settle()
            return
        task = asyncio.create_task(self._run(node, attempt), name=f"task-{node.id}")
        self._attempts[node.id] = task

    def _release(self, node: Node) -> None:
        assert node.executor is not None
        self._running -= 1
        self._running_by_executor[node.executor] -= 1
        # The slot goes back to the most urgent task this executor's limit held back (one
        # per slot: re-queueing all of them on every release would cost O(held) per task).
        held = self._held.get(node.executor)
        while held:
            entry = heapq.heappop(held)
            if _still_ready(entry):
                heapq.heappush(self._ready, entry)
                break

    async def _run(self, node: Node, attempt: int) -> None:
        assert node.executor is not None
        executor = self._registry.get(node.executor)
        try:
            if executor is None:
                outcome = AttemptOutcome(
                    statuses.FAILED,
                    error=failure(
                        "UNKNOWN_EXECUTOR", f"executor {node.executor!r} is not registered"
                    ),
                )
            else:
                context = ExecutionContext(
                    task_id=node.id,
                    root_id=node.root_id,
                    name=node.name,
                    user_id=node.user_id,
                    attempt=attempt,
                    inputs=node.inputs,
                    params=node.params,
                    dependency_results=await self._dependency_results(node),
                    report_progress=functools.partial(self._report_progress, node, attempt),
                )
                timeout = node.timeout_ms / 1000 if node.timeout_ms else None
                outcome = await run_attempt(executor, context, timeout)
        except asyncio.CancelledError:
            if self._closing:
                self._give_back(node, attempt)
            else:  # cancelled by CancelTask, which already recorded it: free the slot
                asyncio.get_running_loop().call_soon(self._settle)
            raise
        finally:
            self._attempts.pop(node.id, None)
            self._release(node)
        self._on_attempt_done(node, attempt, outcome)

    async def _dependency_results(self, node: Node) -> dict[str, Any]:
        results: dict[str, Any] = {}
        missing = []
        for dep_id in node.dependencies:
            dep = self._nodes.get(dep_id)
            if dep is None:
                missing.append(dep_id)
            elif dep.status == statuses.COMPLETED and not dep.is_group:
                results[dep_id] = dep.result
        if missing:
            for dep_id, row in (await self._repository.get_many(missing)).items():
                if row["status"] == statuses.COMPLETED and row["executor"] is not None:
                    results[dep_id] = row["result"]
        return results

    def _on_attempt_done(self, node: Node, attempt: int, outcome: AttemptOutcome) -> None:
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            self._settle()
            return  # the task moved on (e.g. cancelled) while the attempt ran
        if outcome.status == statuses.FAILED and node.attempt < node.max_attempts:
            node.error = outcome.error
            delay = _backoff_seconds(node.retry_backoff_ms, node.attempt)
            node.retry_at_us = now_us() + int(delay * 1_000_000)
            self._set_status(node, statuses.PENDING)
            asyncio.get_running_loop().call_later(delay, self._retry_due, node)
        else:
            self._finish(node, outcome.status, result=outcome.result, error=outcome.error)
        self._settle()

    def _retry_due(self, node: Node) -> None:
        node.retry_at_us = None
        if node.status == statuses.PENDING and node.execution_requested and not node.waiting:
            self._push_ready(node)
            self._settle()

    def _give_back(self, node: Node, attempt: int) -> None:
        """Shutdown interrupted this attempt: it does not count, the task runs again later."""
        if node.status == statuses.IN_PROGRESS and node.attempt == attempt:
            node.attempt -= 1
            self._set_status(node, statuses.PENDING)

    def _report_progress(
        self, node: Node, attempt: int, fraction: float, message: str = ""
    ) -> None:
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            return
        node.progress = min(1.0, max(0.0, float(fraction)))
        node.progress_message = str(message)
        self._carry_progress(node)
        # Rate-limited: at most one stored progress change per task per 100 ms, and the
        # latest value is always stored (a trailing write covers the rest).
        wait_us = node.progress_written_us + _PROGRESS_WRITE_INTERVAL_US - now_us()
        if wait_us <= 0:
            self._write_progress(node, attempt)
        elif not node.progress_flush_pending:
            node.progress_flush_pending = True
            asyncio.get_running_loop().call_later(
                wait_us / 1_000_000, self._write_progress, node, attempt
            )

    def _write_progress(self, node: Node, attempt: int) -> None:
        node.progress_flush_pending = False
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            return
        node.progress_written_us = now_us()
        self._persist(node, statuses.IN_PROGRESS, events.PROGRESS)


class _Pin:
    def __init__(self, engine: EngineCore) -> None:
        self._engine = engine
        self._roots: set[str] = set()

    async def add(self, root_ids: Iterable[str]) -> None:
        for root_id in root_ids:
            if root_id not in self._roots:
                self._roots.add(root_id)
                self._engine._pins[root_id] += 1
                await self._engine._ensure_loaded(root_id)

    def release(self) -> None:
        for root_id in self._roots:
            self._engine._pins[root_id] -= 1
            if not self._engine._pins[root_id]:
                del self._engine._pins[root_id]
            self._engine._touched_trees.add(root_id)
        self._roots.clear()


def _still_ready(entry: tuple[int, str, Node]) -> bool:
    """A queue entry is stale once its task finished, waits again, or was re-prioritised."""
    node = entry[2]
    return (
        node.status == statuses.PENDING
        and not node.waiting
        and node.retry_at_us is None
        and entry[0] == node.priority
    )


def _backoff_seconds(base_ms: int, attempt: int) -> float:
    """Exponential backoff with full jitter on the upper half."""
    ceiling = min(_MAX_BACKOFF_S, (base_ms / 1000) * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
