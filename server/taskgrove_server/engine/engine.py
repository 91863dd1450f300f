"""The execution engine: the one object the use-cases talk to.

The engine keeps every tree with executing tasks in memory, decides every state change
there, single-threaded on the event loop, and queues each change on the writer. Effects
that others can observe happen only after the change is committed: an executor starts
once its claim (pending -> in_progress) is durable, events reach watchers after commit,
and each operation answers once its writes are durable. When the database refuses a
write, the trees it touched are let go and loaded again from what is durable.

It is composed of parts, each owning its data:
- `TreeCache` (tree_cache.py): the loaded trees and their nodes;
- `ReadyQueue` (ready_queue.py): ready tasks in (priority, creation) order, and the limits;
- `Transitions` (transitions.py): state changes, group derivation, their writes;
- `DependencyWaits` (waiting.py): who waits for whom;
- `AttemptRunner` (runner.py): claiming, running and ending attempts;
- `Steering` (steering.py): cancel, retry, update, delete, explain.

Cost per task is independent of the tree's size: dependents are found through an index,
ready tasks wait in a heap, and a status change updates the counters of the task's
ancestors only (O(depth)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from taskgrove.domain import reasons, statuses

from taskgrove_server.engine.changes import TaskChanges
from taskgrove_server.engine.explain import Explanation, explanation_from_dict
from taskgrove_server.engine.node import Node, Tree, created_event
from taskgrove_server.engine.ownership import HeldElsewhere, Ownership
from taskgrove_server.engine.ready_queue import ReadyQueue
from taskgrove_server.engine.routing import Router
from taskgrove_server.engine.runner import AttemptRunner
from taskgrove_server.engine.steering import Steering
from taskgrove_server.engine.transitions import Transitions
from taskgrove_server.engine.tree_cache import TreeCache
from taskgrove_server.engine.waiting import DependencyWaits
from taskgrove_server.errors import ServiceError
from taskgrove_server.events.event import STATUS_CHANGED, Event
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.executors.workers import WorkerPool
from taskgrove_server.logs import TaskLogs
from taskgrove_server.probes import AttemptProbe
from taskgrove_server.storage.records import TaskRow
from taskgrove_server.storage.store import TaskStore
from taskgrove_server.storage.writes import InsertTasks, MarkExecutionRequested

log = logging.getLogger(__name__)

DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
_RELOAD_WINDOW_S = 60.0
_RELOAD_MAX_DELAY_S = 30.0
_MARK_FIRST_ABOVE = 1_000
"""ExecuteTask of more tasks than this commits their flag before claiming any."""


def _nothing(_: object) -> None:
    """Decodes the answer of an operation that returns nothing."""


class Engine:
    def __init__(
        self,
        store: TaskStore,
        registry: ExecutorRegistry,
        *,
        max_concurrency: int = 256,
        executor_limits: dict[str, int] | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        workers: WorkerPool | None = None,
        probe: AttemptProbe | None = None,
        ownership: Ownership | None = None,
        router: Router | None = None,
    ) -> None:
        self._probe = probe
        self._reads = store.reads
        self._writer = store.writer
        self._ownership = ownership
        """Replicas sharing PostgreSQL: which trees this one holds (None: one server)."""
        self._cache = TreeCache(store.reads, store.writer, self._activate, ownership)
        self._queue = ReadyQueue(max_concurrency, executor_limits, gate=workers)
        if workers is not None:
            workers.on_capacity = self._worker_slots_free
        self._transitions = Transitions(store.writer, self._cache)
        if probe is not None:
            self._transitions.on_finished = probe.task_finished
        self._waits = DependencyWaits(
            self._cache, self._transitions, self._queue, store.reads, store.writer
        )
        self.logs = TaskLogs(store.writer, store.reads)
        """The attempts' logs (StreamTaskLogs reads and follows them here)."""
        self._runner = AttemptRunner(
            registry,
            self._cache,
            self._transitions,
            self._queue,
            store.reads,
            store.writer,
            self.settle,
            logs=self.logs,
            max_result_bytes=max_result_bytes,
            probe=probe,
        )
        self._steering = Steering(
            self._cache,
            self._transitions,
            self._waits,
            self._queue,
            self._runner,
            store.reads,
            store.writer,
            self.settle,
        )
        store.writer.on_stale = self._reload
        self._router = router
        """Replicas: sends operations on trees held elsewhere to their holder."""
        if router is not None:
            router.handler = self._serve_command
        if ownership is not None:
            ownership.on_lost = self._lose
            ownership.on_claimed = self._load_claimed
            store.writer.on_lost = ownership.lose
        self._reloads: set[asyncio.Task[None]] = set()
        self._settle_soon = False
        self._reloaded: dict[str, tuple[int, float]] = {}
        """Root id -> (reloads in a row, when the last one was)."""

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Resume every tree that was executing when the server last stopped (replicas:
        those this one held before, nobody holds, or a stopped replica held)."""
        if self._ownership is None:
            roots = await self._reads.active_roots()
        else:
            roots = await self._ownership.take_back()
        for root_id in roots:
            with contextlib.suppress(HeldElsewhere):  # lost again at once
                await self._cache.ensure_loaded(root_id)
        self.settle()
        if self._ownership is not None:
            self._ownership.start()

    def begin_close(self) -> list[asyncio.Task[None]]:
        """Stop starting attempts and hand back every claimed one (synchronously, so an
        attempt not yet started is handed back too); returns the attempts to await."""
        return self._runner.begin_close()

    async def close(self) -> None:
        """Interrupt running attempts and give them back (pending) for the next start;
        replicas: then let go of every tree, so that the others take them over at once."""
        attempts = self.begin_close()
        for reload in self._reloads:
            reload.cancel()
        await asyncio.gather(*attempts, *self._reloads, return_exceptions=True)
        if self._ownership is not None:
            await self._ownership.close()
            for root_id in self._ownership.held():
                self._ownership.release(root_id, handover=True)

    def _worker_slots_free(self, executors: Sequence[str], free: int) -> None:
        for executor in executors:
            self._queue.reopen(executor, free)
        # Called from inside the runner too (a claim ending): settle on the next turn.
        if not self._settle_soon:
            self._settle_soon = True
            asyncio.get_running_loop().call_soon(self._settle_later)

    def _settle_later(self) -> None:
        self._settle_soon = False
        self.settle()

    # ----------------------------------------------------------------- queries

    @property
    def running(self) -> int:
        """Attempts claimed or running now."""
        return self._queue.running

    @property
    def ready(self) -> int:
        """Entries in the ready queue (tasks that may start once a slot frees; a few
        stale entries may be among them until they come up)."""
        return self._queue.depth

    def status_counts(self) -> dict[str, int]:
        """Executable tasks of the trees in memory by status: O(loaded trees), from the
        counters each root group keeps (for metrics)."""
        counts = dict.fromkeys(statuses.ALL, 0)
        for tree in self._cache.trees():
            root = tree.root
            if root.counts is None:
                counts[root.status] = counts.get(root.status, 0) + 1
                continue
            c = root.counts
            counts[statuses.PENDING] += c.pending
            counts[statuses.IN_PROGRESS] += c.total - c.pending - c.terminal
            counts[statuses.FAILED] += c.failed
            counts[statuses.CANCELLED] += c.cancelled
            counts[statuses.COMPLETED] += c.terminal - c.failed - c.cancelled
        return counts

    def group_progress(self, task_id: str) -> float | None:
        """A loaded group's progress from memory (None when its tree is not loaded)."""
        node = self._cache.get(task_id)
        if node is None or not node.is_group:
            return None
        return node.group_progress()

    # ----------------------------------------------------------------- commands

    async def create(self, rows: Sequence[TaskRow], *, lineage: Sequence[str] = ()) -> None:
        """Store new tasks (rows parents first; `lineage`: the stored task they hang from
        and its ancestors) in one commit, and take them into memory if they execute, join
        a loaded tree or reopen a group that started. Rows created with
        `execution_requested` run: creating and executing is one commit. (Replicas: under
        a tree another replica holds, that replica creates them.)"""
        await self._routed(
            rows[0].root_id,
            "create",
            lambda: {"rows": [asdict(row) for row in rows], "lineage": list(lineage)},
            lambda: self._create_here(rows, lineage),
            _nothing,
        )

    async def _create_here(self, rows: Sequence[TaskRow], lineage: Sequence[str]) -> None:
        under = lineage[0] if lineage else None
        root_id = rows[0].root_id
        ownership = self._ownership
        if ownership is None or not rows[0].execution_requested or ownership.holds(root_id):
            # Under a stored tree another replica holds, the writer's guard refuses the
            # insert: that replica creates them (its memory must see them).
            try:
                await self._create(rows, under, lineage)
            except ServiceError as error:
                if ownership is None or error.reason != reasons.REPLICA_UNAVAILABLE:
                    raise
                raise HeldElsewhere(root_id, await ownership.holder(root_id)) from error
            return
        # Created to execute: held here first (a new tree cannot be held elsewhere).
        acquired = not ownership.holds(root_id)
        await ownership.acquire(root_id)
        try:
            await self._create(rows, under, lineage)
        finally:
            loaded = self._cache.is_loaded(root_id) or self._cache.is_loading(root_id)
            if acquired and not loaded:
                ownership.release(root_id)

    async def _create(
        self, rows: Sequence[TaskRow], under: str | None, lineage: Sequence[str]
    ) -> None:
        if self._probe is not None and rows and rows[0].execution_requested:
            self._probe.execution_requested(rows[0].root_id)
        insert = InsertTasks(
            list(rows), [created_event(row) for row in rows], under, tuple(lineage)
        )
        self._writer.queue(insert)
        await self._writer.flush()
        root_id = rows[0].root_id
        executing = rows[0].execution_requested
        if self._cache.is_loaded(root_id) or self._cache.is_loading(root_id):
            await self._cache.add_rows(rows, new_tree=False)
        elif executing and under is None:
            await self._cache.add_rows(rows, new_tree=True)
        elif executing or insert.reopens:
            # Loading arms what executes; it also derives again the groups above new
            # tasks (a group that already started is not finished any more).
            try:
                await self._cache.ensure_loaded(root_id)
            except HeldElsewhere:
                return  # acquired elsewhere since the commit: loaded there with the rows
        else:
            return
        self.settle()
        await self._writer.flush()

    async def execute(self, task_id: str, root_id: str) -> int:
        """Request execution of a task's subtree; returns how many tasks it scheduled."""
        return int(
            await self._routed(
                root_id,
                "execute",
                lambda: {"task_id": task_id},
                lambda: self._execute_here(task_id, root_id),
                int,
            )
        )

    async def _execute_here(self, task_id: str, root_id: str) -> int:
        if self._probe is not None:
            self._probe.execution_requested(root_id)
        async with self._cache.pinned([root_id]):
            top = self._cache[task_id]
            tree = self._cache.tree(root_id)
            assert tree is not None
            flagged = []
            for node in top.subtree():
                if not node.execution_requested:
                    node.execution_requested = True
                    node.version += 1
                    flagged.append(node)
            if flagged:  # one statement (no event: nothing a watcher sees changes yet)
                self._writer.queue(MarkExecutionRequested([n.id for n in flagged], root_id))
            scheduled = await self._activate(tree, flagged)
            try:
                if len(flagged) > _MARK_FIRST_ABOVE:
                    # A large tree's flag is a long commit: its first claims would wait
                    # it out (and count it as running time), so they are claimed after.
                    await self._writer.flush()
            finally:
                # Even when the call is cancelled or refused meanwhile: the flag stays
                # queued and what it armed must be claimed (a refused tree is reloaded).
                self.settle()
        await self._writer.flush()
        return scheduled

    async def cancel(self, task_id: str, root_id: str) -> list[str]:
        return list(
            await self._routed(
                root_id,
                "cancel",
                lambda: {"task_id": task_id},
                lambda: self._steering.cancel(task_id, root_id),
                list,
            )
        )

    async def retry(self, task_id: str, root_id: str) -> list[str]:
        return list(
            await self._routed(
                root_id,
                "retry",
                lambda: {"task_id": task_id},
                lambda: self._steering.retry(task_id, root_id),
                list,
            )
        )

    async def update(
        self, task_id: str, root_id: str, changes: TaskChanges, expected_etag: str
    ) -> None:
        await self._routed(
            root_id,
            "update",
            lambda: {"task_id": task_id, "changes": asdict(changes), "etag": expected_etag},
            lambda: self._steering.update(task_id, root_id, changes, expected_etag),
            _nothing,
        )

    async def delete(self, task_id: str, root_id: str, expected_etag: str) -> list[str]:
        return list(
            await self._routed(
                root_id,
                "delete",
                lambda: {"task_id": task_id, "etag": expected_etag},
                lambda: self._steering.delete(task_id, root_id, expected_etag),
                list,
            )
        )

    async def explain(self, task_id: str, root_id: str) -> Explanation:
        explanation = await self._routed(
            root_id,
            "explain",
            lambda: {"task_id": task_id},
            lambda: self._steering.explain(task_id, root_id),
            explanation_from_dict,
        )
        assert isinstance(explanation, Explanation)
        return explanation

    # ----------------------------------------------------------------- replicas

    def events_published(self, events: Sequence[Event]) -> None:
        """Replicas: a task of a tree held elsewhere that ended releases (or fails) the
        tasks here that wait for it; its end reaches every replica as an event."""
        released = False
        for event in events:
            if (
                event.type == STATUS_CHANGED
                and event.status in statuses.TERMINAL
                and self._waits.waits_for(event.task_id)
                and self._cache.get(event.task_id) is None
            ):
                self._waits.finished(event.task_id, event.status)
                released = True
        if released:
            self.settle()

    def stranded(self, served: Mapping[str, int]) -> dict[str, set[str]]:
        """Replicas: trees held here with ready tasks of remote executors that no worker
        connected here serves (`served`), and nothing running: root -> those executors
        (engine/placement.py hands them to a replica that has the workers)."""
        gate = self._queue.gate
        found: dict[str, set[str]] = {}
        for executor in self._queue.held_executors():
            if executor in served or gate is None or not gate.is_remote(executor):
                continue
            for node in self._queue.held_back(executor):
                found.setdefault(node.root_id, set()).add(executor)
        return {root_id: needs for root_id, needs in found.items() if self._cache.is_idle(root_id)}

    def hand_over(self, root_id: str, replica_id: str) -> bool:
        """Give an idle tree to another replica (which adopts it and loads it from what
        its last writes here committed); False when it is no longer idle here."""
        if self._ownership is None or not self._cache.is_idle(root_id):
            return False
        self._cache.drop([root_id])
        self._ownership.hand_over(root_id, replica_id)
        return True

    async def _routed(
        self,
        root_id: str,
        kind: str,
        payload: Callable[[], dict[str, Any]],
        here: Callable[[], Awaitable[Any]],
        decode: Callable[[Any], Any],
    ) -> Any:
        """`here()`, or, while another replica holds the tree, the same operation run
        there (engine/routing.py): the answer is decoded to what `here()` returns."""
        if self._router is None:
            return await here()

        async def encoded() -> Any:
            result = await here()
            if is_dataclass(result) and not isinstance(result, type):
                return asdict(result)
            return result

        return decode(await self._router.run(root_id, kind, payload, encoded))

    async def _serve_command(self, kind: str, root_id: str, payload: dict[str, Any]) -> Any:
        """Run here an operation another replica sent (this replica holds the tree)."""
        task_id = payload.get("task_id", "")
        if kind == "create":
            rows = [TaskRow(**row) for row in payload["rows"]]
            await self._create_here(rows, payload["lineage"])
            return None
        if kind == "execute":
            return await self._execute_here(task_id, root_id)
        if kind == "cancel":
            return await self._steering.cancel(task_id, root_id)
        if kind == "retry":
            return await self._steering.retry(task_id, root_id)
        if kind == "update":
            changes = TaskChanges(**payload["changes"])
            await self._steering.update(task_id, root_id, changes, payload["etag"])
            return None
        if kind == "delete":
            return await self._steering.delete(task_id, root_id, payload["etag"])
        if kind == "explain":
            return asdict(await self._steering.explain(task_id, root_id))
        raise ValueError(f"unknown command {kind!r}")

    # ----------------------------------------------------------------- internals

    async def _activate(self, tree: Tree, nodes: list[Node]) -> int:
        """Nodes (parents first) just loaded, added or executed: count what executes,
        recover attempts that are gone, arm what is pending, and derive the groups again.
        Returns how many pending tasks it armed."""
        to_arm = []
        for node in nodes:
            if node.is_group or not node.execution_requested:
                continue
            if node.status in statuses.TERMINAL:
                continue
            tree.active += 1
            if node.status == statuses.IN_PROGRESS and not self._runner.is_running(
                node.id, node.attempt
            ):
                self._transitions.recover(
                    node, "the attempt was lost (the server stopped, or storage refused it)"
                )
            if node.status == statuses.PENDING:
                to_arm.append(node)
        await self._waits.arm(to_arm)
        # Groups derive their status again, children before parents: those among the
        # nodes, then those above them.
        groups = [node for node in reversed(nodes) if node.is_group]
        seen = {node.id for node in nodes}
        for node in nodes:
            for ancestor in node.ancestors():
                if ancestor.id in seen:
                    break
                seen.add(ancestor.id)
                if ancestor.is_group:
                    groups.append(ancestor)
        for group in groups:
            self._transitions.refresh_group(group)
        self._cache.touch(tree.root.id)
        return len(to_arm)

    def settle(self) -> None:
        """Propagate finished tasks to their dependents, start what is ready, let go of
        trees with nothing left to run."""
        while self._transitions.finished:
            self._waits.notify(self._transitions.finished.popleft())
        self._runner.pump()
        self._cache.unload_idle()

    def _reload(self, root_ids: Iterable[str]) -> None:
        """The database refused changes to these trees: forget them and load them again."""
        now = time.monotonic()
        roots = set(root_ids)
        self._cache.drop(roots)
        # Unloaded trees too: a group above a refused change may have been derived from it.
        for root_id in roots:
            # A tree refused again and again is reloaded less and less often.
            count, since = self._reloaded.get(root_id, (0, now))
            count = count + 1 if now - since < _RELOAD_WINDOW_S else 1
            self._reloaded[root_id] = (count, now)
            delay = min(_RELOAD_MAX_DELAY_S, 0.05 * 2**count) if count > 1 else 0.0
            log.warning("reloading tree %s from the database (in %.2fs)", root_id, delay)
            task = asyncio.get_running_loop().create_task(self._load(root_id, delay))
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _load(self, root_id: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            await self._cache.ensure_loaded(root_id)
            self.settle()
        except HeldElsewhere:
            pass  # another replica took it over meanwhile: it is that one's to load
        except Exception:
            log.exception("reloading tree %s failed", root_id)

    def _lose(self, root_ids: set[str]) -> None:
        """Another replica took these trees over: stop their attempts, forget them."""
        self._runner.abandon(root_ids)
        self._cache.drop(root_ids)
        self.settle()

    async def _load_claimed(self, root_ids: list[str]) -> None:
        """Trees taken over from a replica that stopped: load them (which recovers the
        attempts that were running there) and run what is ready."""
        for root_id in root_ids:
            try:
                await self._cache.ensure_loaded(root_id)
            except HeldElsewhere:
                continue
            except Exception:
                log.exception("loading tree %s taken over failed", root_id)
        self.settle()
