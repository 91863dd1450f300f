"""Running attempts: claiming ready tasks, starting executors once the claim is durable,
recording how they end, retrying with backoff, and reporting progress.

An attempt holds its node's id and number, never the node itself past its start: the tree
may be let go and loaded again while the executor runs, and the outcome goes to whatever
node the engine holds for that task then.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from taskgrove.domain import reasons, statuses

from taskgrove_server.clock import now_us
from taskgrove_server.engine.attempt import AttemptOutcome, run_attempt
from taskgrove_server.engine.node import Node
from taskgrove_server.engine.ownership import HeldElsewhere
from taskgrove_server.engine.ready_queue import ReadyQueue
from taskgrove_server.engine.transitions import Transitions, failure
from taskgrove_server.engine.tree_cache import TreeCache
from taskgrove_server.events.event import PROGRESS
from taskgrove_server.executors import ExecutionContext, ExecutorRegistry
from taskgrove_server.logs import AttemptLog, TaskLogs
from taskgrove_server.probes import AttemptProbe
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.writer import Writer

_logger = logging.getLogger(__name__)

_MAX_BACKOFF_S = 300.0
_PROGRESS_WRITE_INTERVAL_US = 100_000
CLAIM_WINDOW = 32
"""Claims awaiting their commit at most; more are claimed once those are committed. A
claim waits for its commit before its executor starts, and the task counts as running
from its claim: claiming the whole concurrency limit at once (256) made one commit of
~1,000 rows that every claimed task waited out (0 s tasks recorded as running 20 ms at
p50, 60-90 ms at p99 in a 10,000-task tree). With 32 a commit is small and 0 s tasks
record 4-6 ms; long tasks still fill the concurrency limit, 32 per commit."""


def backoff_seconds(base_ms: int, attempt: int) -> float:
    """Exponential backoff with full jitter on the upper half."""
    ceiling = min(_MAX_BACKOFF_S, (base_ms / 1000) * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class AttemptRunner:
    def __init__(
        self,
        registry: ExecutorRegistry,
        cache: TreeCache,
        transitions: Transitions,
        queue: ReadyQueue,
        reads: TaskReads,
        writer: Writer,
        settle: Callable[[], None],
        *,
        logs: TaskLogs,
        max_result_bytes: int,
        probe: AttemptProbe | None = None,
    ) -> None:
        self._registry = registry
        self._probe = probe
        self._logs = logs
        self._cache = cache
        self._transitions = transitions
        self._queue = queue
        self._reads = reads
        self._writer = writer
        self._settle = settle
        self._max_result_bytes = max_result_bytes
        self._attempts: dict[str, tuple[int, asyncio.Task[None]]] = {}
        """Task id -> (attempt number, the asyncio task running it)."""
        self._claimed: dict[str, tuple[Node, int]] = {}
        """Attempts claimed and not yet ended (launched or not): handed back on close."""
        self._relaunches: set[asyncio.Task[None]] = set()
        self._awaiting_commit = 0
        """Claims whose commit has not run their launch yet (see CLAIM_WINDOW)."""
        self._refill_queued = False
        self.closing = False

    def is_running(self, task_id: str, attempt: int) -> bool:
        """Whether this attempt of the task is claimed here and has not ended."""
        claimed = self._claimed.get(task_id)
        return claimed is not None and claimed[1] == attempt

    def pump(self) -> None:
        """Claim ready tasks while slots are free; each starts once its claim commits."""
        while not self.closing:
            if self._awaiting_commit >= CLAIM_WINDOW:
                if not self._refill_queued:
                    # Once the claims queued so far are committed (and launched), claim on.
                    self._refill_queued = True
                    self._writer.after_commit(self._refill)
                return
            node = self._queue.take()
            if node is None:
                return
            self._awaiting_commit += 1
            node.attempt += 1
            node.error = None
            node.progress = 0.0
            node.progress_message = ""
            self._transitions.set_status(node, statuses.IN_PROGRESS)
            self._claimed[node.id] = (node, node.attempt)
            self._writer.after_commit(
                functools.partial(self._launch, node, node.attempt, time.perf_counter())
            )

    def cancel(self, task_id: str) -> None:
        """Interrupt a running attempt (its task was cancelled)."""
        running = self._attempts.get(task_id)
        if running is not None:
            running[1].cancel()

    def abandon(self, root_ids: set[str]) -> None:
        """Another replica took these trees over: interrupt their attempts here without
        recording anything (it recovers them; what they would write is fenced anyway)."""
        for task_id, (node, _) in list(self._claimed.items()):
            if node.root_id in root_ids:
                running = self._attempts.get(task_id)
                if running is not None:
                    running[1].cancel()

    def begin_close(self) -> list[asyncio.Task[None]]:
        """Stop claiming, hand back every claimed attempt, interrupt the running ones.

        Handing back happens here, not in the attempts' clean-up: an attempt cancelled
        before its first step never runs its clean-up."""
        self.closing = True
        for node, attempt in list(self._claimed.values()):
            self._give_back(node, attempt)
        tasks = [task for _, task in self._attempts.values()]
        for task in tasks:
            task.cancel()
        return tasks

    # ----------------------------------------------------------------- one attempt

    def _refill(self) -> None:
        self._refill_queued = False
        self._settle()

    def _launch(self, node: Node, attempt: int, claimed_at: float) -> None:
        self._awaiting_commit -= 1
        if not self.is_running(node.id, attempt):
            return  # handed back (shutdown) before its claim committed
        if node.detached:
            # The tree was let go (a refused write) after the claim: whether the claim
            # is durable shows once it is loaded again.
            task = asyncio.create_task(
                self._relaunch(node, attempt, claimed_at), name=f"relaunch-{node.id}"
            )
            self._relaunches.add(task)
            task.add_done_callback(self._relaunches.discard)
            return
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            self._end(node, attempt)  # cancelled between its claim and the claim's commit
            self._settle()
            return
        self._start(node, attempt, claimed_at)

    async def _relaunch(self, stale: Node, attempt: int, claimed_at: float) -> None:
        try:
            await self._cache.ensure_loaded(stale.root_id)
        except HeldElsewhere:  # taken over: the claim is the other replica's to recover
            self._end(stale, attempt)
            self._settle()
            return
        node = self._cache.get(stale.id)
        if self.closing:
            self._end(stale, attempt)  # stopping: the next start recovers the task
        elif node is not None and node.status == statuses.IN_PROGRESS and node.attempt == attempt:
            self._claimed[node.id] = (node, attempt)
            self._start(node, attempt, claimed_at)
        else:
            self._end(stale, attempt)
            self._settle()

    def _start(self, node: Node, attempt: int, claimed_at: float) -> None:
        task = asyncio.create_task(self._run(node, attempt, claimed_at), name=f"task-{node.id}")
        self._attempts[node.id] = (attempt, task)

    async def _run(self, node: Node, attempt: int, claimed_at: float) -> None:
        task_id, root_id = node.id, node.root_id
        try:
            try:
                outcome = await self._execute(node, attempt, claimed_at)
            finally:
                if self._attempts.get(task_id, (0,))[0] == attempt:
                    del self._attempts[task_id]
            if self._cache.get(task_id) is None:
                # The tree was let go while the attempt ran: the outcome goes to it
                # reloaded (the claim, still held, keeps the reload from abandoning it).
                try:
                    await self._cache.ensure_loaded(root_id)
                except HeldElsewhere:
                    _logger.warning("task %s: its tree moved to another replica", task_id)
                    return
            self._record(task_id, attempt, outcome)
        except asyncio.CancelledError:
            if not self.closing:  # cancelled by CancelTask, which recorded it: free the slot
                asyncio.get_running_loop().call_soon(self._settle)
            raise
        finally:
            self._end(node, attempt)
        self._settle()

    async def _execute(self, node: Node, attempt: int, claimed_at: float) -> AttemptOutcome:
        assert node.executor is not None
        executor = self._registry.get(node.executor)
        if executor is None:
            return AttemptOutcome(
                statuses.FAILED,
                error=failure(reasons.UNKNOWN_EXECUTOR, self._registry.unknown(node.executor)),
            )
        dependency_results = await self._dependency_results(node)
        log = self._logs.open(node.id, attempt)  # closed below, whatever happens
        context = ExecutionContext(
            task_id=node.id,
            root_id=node.root_id,
            name=node.name,
            user_id=node.user_id,
            attempt=attempt,
            executor=node.executor,
            timeout_s=node.timeout_ms / 1000 if node.timeout_ms else None,
            inputs=node.inputs,
            params=node.params,
            dependency_results=dependency_results,
            report_progress=functools.partial(self._report_progress, node, attempt),
            log=log.write,
        )
        timeout = node.timeout_ms / 1000 if node.timeout_ms else None
        probe = self._probe
        started = time.perf_counter()
        handle = None
        if probe is not None:
            handle = probe.attempt_started(
                node.executor, node.id, node.root_id, attempt, started - claimed_at
            )
        outcome: AttemptOutcome | None = None
        try:
            outcome = await run_attempt(executor, context, timeout, self._max_result_bytes)
            if outcome.error is not None:
                _log_failure(log, outcome)
                _log_failed_attempt(node, attempt, outcome.error)
            return outcome
        finally:
            # Before the outcome's write: the log is complete once the task has ended.
            log.close()
            if probe is not None:
                probe.attempt_ended(
                    handle,
                    node.executor,
                    _outcome_label(outcome),
                    time.perf_counter() - started,
                    None if outcome is None else outcome.error,
                )

    def _end(self, node: Node, attempt: int) -> None:
        """The attempt's slot is free (once per claimed attempt)."""
        claimed = self._claimed.get(node.id)
        if claimed is not None and claimed[1] == attempt:
            del self._claimed[node.id]
            assert node.executor is not None
            self._queue.release(node.executor, node.id)

    async def _dependency_results(self, node: Node) -> dict[str, Any]:
        results: dict[str, Any] = {}
        missing = []
        for dep_id in node.dependencies:
            dep = self._cache.get(dep_id)
            if dep is None:
                missing.append(dep_id)
            elif dep.status == statuses.COMPLETED and not dep.is_group:
                results[dep_id] = dep.result
        if missing:
            for dep_id, row in (await self._reads.get_many(missing)).items():
                if row.status == statuses.COMPLETED and row.executor is not None:
                    results[dep_id] = row.result
        return results

    def _record(self, task_id: str, attempt: int, outcome: AttemptOutcome) -> None:
        node = self._cache.get(task_id)
        if node is None or node.status != statuses.IN_PROGRESS or node.attempt != attempt:
            return  # the task moved on (e.g. cancelled) while the attempt ran
        if outcome.given_back:
            # As when the server stops (the same hand-back), but it runs again at once.
            self._give_back(node, attempt)
            asyncio.get_running_loop().call_soon(self._retry_due, node)
        elif outcome.status == statuses.FAILED and node.attempt < node.max_attempts:
            node.error = outcome.error
            delay = backoff_seconds(node.retry_backoff_ms, node.attempt)
            node.retry_at_us = now_us() + int(delay * 1_000_000)
            self._transitions.set_status(node, statuses.PENDING)
            asyncio.get_running_loop().call_later(delay, self._retry_due, node)
        else:
            self._transitions.finish(
                node, outcome.status, result=outcome.result, error=outcome.error
            )

    def _retry_due(self, node: Node) -> None:
        node.retry_at_us = None
        if (
            node.status == statuses.PENDING
            and node.execution_requested
            and not node.waiting
            and not node.detached
        ):
            self._queue.push(node)
            self._settle()

    def _give_back(self, node: Node, attempt: int) -> None:
        """Shutdown (or a stopping worker) interrupted this attempt: it does not count, the
        task runs again later."""
        if node.status == statuses.IN_PROGRESS and node.attempt == attempt:
            node.attempt -= 1
            self._transitions.set_status(node, statuses.PENDING)
        self._end(node, attempt)

    # ----------------------------------------------------------------- progress

    def _report_progress(
        self, node: Node, attempt: int, fraction: float, message: str = ""
    ) -> None:
        if node.status != statuses.IN_PROGRESS or node.attempt != attempt or node.detached:
            return
        node.progress = min(1.0, max(0.0, float(fraction)))
        # Stored as text: no NUL (PostgreSQL refuses it), no novel.
        node.progress_message = str(message).replace("\x00", "")[:1000]
        self._transitions.carry_progress(node)
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
        self._transitions.persist(node, statuses.IN_PROGRESS, PROGRESS)


def _outcome_label(outcome: AttemptOutcome | None) -> str:
    """completed, failed, timeout or cancelled (None: interrupted)."""
    if outcome is None:
        return "cancelled"
    if outcome.error is not None and outcome.error.get("reason") == reasons.TIMEOUT:
        return "timeout"
    return outcome.status


def _log_failed_attempt(node: Node, attempt: int, error: dict[str, Any]) -> None:
    """One server log line per failed attempt; the traceback (an executor's bug) is a
    field of that line (JSON logs) and a debug line of its own (text logs)."""
    trace = error.get("details", {}).get("traceback")
    fields = {
        "task_id": node.id,
        "root_id": node.root_id,
        "executor": node.executor,
        "attempt": attempt,
        "max_attempts": node.max_attempts,
        "reason": error.get("reason"),
        "error_message": error.get("message"),
    }
    if isinstance(trace, str) and trace:
        fields["traceback"] = trace
    _logger.warning(
        "attempt %d/%d of task %s (root %s, executor %s) failed: %s: %s",
        attempt,
        node.max_attempts,
        node.id,
        node.root_id,
        node.executor,
        error.get("reason"),
        error.get("message"),
        extra=fields,
    )
    if isinstance(trace, str) and trace and _logger.isEnabledFor(logging.DEBUG):
        _logger.debug("traceback of task %s attempt %d:\n%s", node.id, attempt, trace)


def _log_failure(log: AttemptLog, outcome: AttemptOutcome) -> None:
    """A failed attempt's log ends with why: the traceback when there is one."""
    if outcome.error is None:
        return
    trace = outcome.error.get("details", {}).get("traceback")
    if isinstance(trace, str) and trace:
        log.write(trace)
    else:
        log.write(f"{outcome.error['reason']}: {outcome.error['message']}")
