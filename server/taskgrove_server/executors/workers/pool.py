"""Connected workers, the executors they serve, and the leases of the attempts they run.

The engine claims a ready task of a remote executor only when `reserve` finds a worker
with a free slot (the ready queue holds it back otherwise), so dispatch keeps the one
global order and a worker never holds more attempts than its slots. A slot is taken from
the reservation until the worker reports on the attempt, even after the server has given
up on it (cancelled, timed out, lease expired): the worker may still be running it.

Leases are renewed by any message of their worker. A worker silent for `lease_timeout_s`
(disconnected, or stalled on an open stream) loses them: each attempt fails with
WORKER_LOST, which the engine retries like any failure while attempts remain. An outcome
counts only for a live lease, of its own worker, with the lease's fencing token.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskgrove.domain import reasons

from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.executors.base import (
    AttemptGivenBack,
    ExecutionContext,
    Executor,
    ExecutorError,
)
from taskgrove_server.executors.registry import ExecutorRegistry
from taskgrove_server.executors.workers.lease import Lease
from taskgrove_server.executors.workers.messages import (
    Acknowledge,
    Assign,
    Cancel,
    Close,
    RemoteExecutorSpec,
    ToWorker,
    WorkerSpec,
)
from taskgrove_server.executors.workers.registration import check_registration

log = logging.getLogger(__name__)

Outbox = asyncio.Queue[ToWorker]
SaveDefinition = Callable[[RemoteExecutorSpec], Awaitable[None]]


@dataclass(eq=False, slots=True)
class ConnectedWorker:
    """A worker, from its registration until it has been silent past the lease timeout
    (a reconnect with the same id takes its state over)."""

    spec: WorkerSpec
    outbox: Outbox | None
    """None while disconnected."""
    last_seen: float
    held: dict[str, Lease] = field(default_factory=dict)
    """Assignments the worker has not reported on (live or not): they hold its slots."""
    reserved: int = 0
    """Slots taken by claims whose assignment is not sent yet."""
    stale: bool = False
    """Silent past the lease timeout on a stream still open (e.g. a stopped process)."""
    leaving: bool = False
    """Gave an attempt back (what a stopping worker does): nothing more is assigned to it
    on this stream, or its freed slot would take the retry only to give it back too."""

    @property
    def free(self) -> int:
        if self.outbox is None or self.stale or self.leaving:
            return 0
        return max(0, self.spec.slots - len(self.held) - self.reserved)

    def serves(self, executor: str) -> bool:
        return any(e.id == executor for e in self.spec.executors)


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker_id: str
    name: str
    labels: dict[str, str]
    slots: int
    free_slots: int


class WorkerPool:
    def __init__(
        self,
        registry: ExecutorRegistry,
        *,
        lease_timeout_s: float = 15.0,
        save: SaveDefinition | None = None,
        declared: Iterable[RemoteExecutorSpec] = (),
    ) -> None:
        self._registry = registry
        self.lease_timeout_s = lease_timeout_s
        self.heartbeat_interval_s = lease_timeout_s / 3
        self._save = save
        self._workers: dict[str, ConnectedWorker] = {}
        self._leases: dict[str, Lease] = {}
        self._lease_prefix = uuid.uuid4().hex[:16]
        """Lease ids are this process's random prefix and a counter: unique across
        restarts, without a uuid4 (a urandom call) per assignment."""
        self._lease_numbers = itertools.count(1)
        """Live leases: the server awaits their outcome."""
        self._reservations: dict[str, str] = {}
        """Task id -> worker id, from the claim until the assignment is sent."""
        self._declared = {spec.id for spec in declared}
        self.on_capacity: Callable[[Sequence[str], int], None] = lambda executors, free: None
        """Called with the executors of a worker whose free slots grew, and how many it
        has free now."""
        self._sweeper: asyncio.Task[None] | None = None
        for spec in declared:
            self._define(spec)

    # ----------------------------------------------------------------- definitions

    def remember(self, specs: Iterable[RemoteExecutorSpec]) -> None:
        """Executors workers registered before (read from storage at start); declared ones
        and those the server runs itself win."""
        for spec in specs:
            current = self._registry.get(spec.id)
            if current is None or (current.remote and spec.id not in self._declared):
                self._define(spec)

    def _define(self, spec: RemoteExecutorSpec) -> None:
        self._registry.register_remote(
            Executor(
                id=spec.id,
                run=self._run,
                description=spec.description,
                input_schema=dict(spec.input_schema),
                remote=True,
            )
        )

    def is_remote(self, executor: str) -> bool:
        found = self._registry.get(executor)
        return found is not None and found.remote

    # ----------------------------------------------------------------- connections

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="worker-leases")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for worker in self._workers.values():
            if worker.outbox is not None:
                worker.outbox.put_nowait(Close())

    async def connect(self, spec: WorkerSpec, outbox: Outbox) -> ConnectedWorker:
        """Register a worker (or a reconnect of one); raises ServiceError and registers
        nothing when any part of the registration is refused."""
        check_registration(spec)
        changed = self._check_conflicts(spec)
        for executor in changed:
            if self._save is not None:
                await self._save(executor)  # durable before it is used
            self._define(executor)
        worker = self._workers.get(spec.worker_id)
        if worker is None:
            worker = ConnectedWorker(spec, outbox, time.monotonic())
            self._workers[spec.worker_id] = worker
        else:
            if worker.outbox is not None and worker.outbox is not outbox:
                worker.outbox.put_nowait(Close())  # its old stream: this one replaces it
            worker.spec, worker.outbox, worker.stale, worker.leaving = spec, outbox, False, False
            worker.last_seen = time.monotonic()
            for lease in worker.held.values():
                if lease.given_up is not None:  # given up while it was away: say it again
                    outbox.put_nowait(Cancel(lease.id, lease.given_up))
        log.info(
            "worker %s (%s) connected: %d slots, executors %s",
            spec.name,
            spec.worker_id,
            spec.slots,
            ", ".join(e.id for e in spec.executors),
        )
        self._freed(worker)
        return worker

    def _check_conflicts(self, spec: WorkerSpec) -> list[RemoteExecutorSpec]:
        """The executors this registration defines anew; raises EXECUTOR_CONFLICT."""
        changed = []
        for executor in spec.executors:
            current = self._registry.get(executor.id)
            schema = dict(executor.input_schema)
            if current is None:
                changed.append(executor)
                continue
            if not current.remote:
                raise _conflict(executor.id, "the server runs it itself")
            if dict(current.input_schema) == schema:
                if current.description != executor.description and not self._serving(
                    executor.id, spec.worker_id
                ):
                    changed.append(executor)
                continue
            if executor.id in self._declared:
                raise _conflict(executor.id, "its input schema differs from the declared one")
            if self._serving(executor.id, spec.worker_id):
                raise _conflict(
                    executor.id, "its input schema differs from that of its connected workers"
                )
            changed.append(executor)  # nobody serves it now: a new version of it
        return changed

    def _serving(self, executor: str, other_than: str) -> bool:
        return any(
            worker.outbox is not None and worker.serves(executor)
            for worker_id, worker in self._workers.items()
            if worker_id != other_than
        )

    def disconnect(self, worker: ConnectedWorker, outbox: Outbox) -> None:
        """The worker's stream ended; its leases live on until the timeout."""
        if worker.outbox is outbox:
            worker.outbox = None
            log.info("worker %s (%s) disconnected", worker.spec.name, worker.spec.worker_id)

    def seen(self, worker: ConnectedWorker) -> None:
        """Any message renews the worker's leases."""
        worker.last_seen = time.monotonic()
        if worker.stale:
            worker.stale = False
            self._freed(worker)

    def _freed(self, worker: ConnectedWorker) -> None:
        if worker.free > 0:
            self.on_capacity([e.id for e in worker.spec.executors], worker.free)

    # ----------------------------------------------------------------- dispatch

    def reserve(self, executor: str, task_id: str) -> bool:
        """Take a slot of the worker serving `executor` with the most free ones."""
        best = None
        for worker in self._workers.values():
            if (
                worker.free > 0
                and worker.serves(executor)
                and (best is None or worker.free > best.free)
            ):
                best = worker
        if best is None:
            return False
        best.reserved += 1
        self._reservations[task_id] = best.spec.worker_id
        return True

    def unreserve(self, task_id: str) -> None:
        """The claim ended before its assignment was sent (cancelled, shutdown)."""
        worker_id = self._reservations.pop(task_id, None)
        worker = self._workers.get(worker_id or "")
        if worker is not None:
            worker.reserved -= 1
            self._freed(worker)

    async def _run(self, context: ExecutionContext) -> Any:
        """`Executor.run` of every remote executor: assign the attempt to the worker its
        claim reserved, and wait for the outcome."""
        worker_id = self._reservations.pop(context.task_id, None)
        worker = self._workers.get(worker_id or "")
        if worker is not None:
            worker.reserved -= 1
        if worker is None or worker.outbox is None:
            raise ExecutorError(
                "the worker chosen for the attempt disconnected before it was sent",
                reason=reasons.WORKER_LOST,
                details={"worker_id": worker_id or ""},
            )
        lease_id = f"{self._lease_prefix}-{next(self._lease_numbers):x}"
        lease = Lease(lease_id, context.attempt, worker.spec.worker_id, context)
        worker.held[lease.id] = lease
        self._leases[lease.id] = lease
        deadline_us = (
            time.time_ns() // 1000 + int(context.timeout_s * 1_000_000)
            if context.timeout_s
            else None
        )
        worker.outbox.put_nowait(_assignment(lease, context, deadline_us))
        try:
            return await lease.outcome
        except asyncio.CancelledError:
            if self._leases.pop(lease.id, None) is not None:
                timed_out = deadline_us is not None and time.time_ns() // 1000 >= deadline_us
                lease.given_up = reasons.TIMEOUT if timed_out else reasons.CANCELLED
                if worker.outbox is not None:
                    worker.outbox.put_nowait(Cancel(lease.id, lease.given_up))
            raise
        finally:
            self._leases.pop(lease.id, None)

    # ----------------------------------------------------------------- reports

    def _live(self, worker: ConnectedWorker, lease_id: str) -> Lease | None:
        lease = self._leases.get(lease_id)
        if lease is None or lease.worker_id != worker.spec.worker_id or lease.outcome.done():
            return None
        return lease

    def accepted(self, worker: ConnectedWorker, lease_id: str) -> None:
        if (lease := self._live(worker, lease_id)) is not None:
            lease.accepted = True

    def progress(
        self, worker: ConnectedWorker, lease_id: str, fraction: float, message: str
    ) -> None:
        if (lease := self._live(worker, lease_id)) is not None:
            lease.context.report_progress(fraction, message)

    def log_lines(self, worker: ConnectedWorker, lease_id: str, lines: Sequence[str]) -> None:
        if (lease := self._live(worker, lease_id)) is not None:
            for line in lines:
                lease.context.log(line)

    def outcome(
        self,
        worker: ConnectedWorker,
        lease_id: str,
        fencing_token: int,
        *,
        result: Any = None,
        failure: ExecutorError | None = None,
        cancelled: bool = False,
    ) -> Acknowledge:
        """Record how an attempt ended, if its lease is still live; frees its slot."""
        lease = self._live(worker, lease_id)
        if cancelled and lease is not None and lease.fencing_token == fencing_token:
            worker.leaving = True  # before the slot is freed (and offered again)
        if worker.held.pop(lease_id, None) is not None:
            self._freed(worker)
        if cancelled and lease is None:
            return Acknowledge(lease_id, True)  # the server's cancel, answered
        if lease is None or lease.fencing_token != fencing_token:
            return Acknowledge(lease_id, False, reasons.STALE_LEASE)
        del self._leases[lease_id]
        if cancelled:  # unasked: the worker is stopping, the attempt runs again elsewhere
            lease.outcome.set_exception(
                AttemptGivenBack(f"worker {worker.spec.name} gave the attempt back")
            )
        elif failure is not None:
            lease.outcome.set_exception(failure)
        else:
            lease.outcome.set_result(result)
        return Acknowledge(lease_id, True)

    # ----------------------------------------------------------------- leases

    async def _sweep(self) -> None:
        interval = max(0.05, min(1.0, self.lease_timeout_s / 5))
        while True:
            await asyncio.sleep(interval)
            self.expire(time.monotonic())

    def expire(self, now: float) -> None:
        """Workers silent past the lease timeout lose their leases."""
        for worker_id, worker in list(self._workers.items()):
            if now - worker.last_seen <= self.lease_timeout_s:
                continue
            lost = [lease for lease in worker.held.values() if self._leases.get(lease.id)]
            for lease in lost:
                del self._leases[lease.id]
                lease.outcome.set_exception(
                    ExecutorError(
                        f"worker {worker.spec.name} ({worker_id}) was silent for more than "
                        f"{self.lease_timeout_s:g}s",
                        reason=reasons.WORKER_LOST,
                        details={"worker_id": worker_id},
                    )
                )
            if lost:
                log.warning("worker %s (%s) lost %d leases", worker.spec.name, worker_id, len(lost))
            if worker.outbox is None:
                del self._workers[worker_id]
            else:
                worker.stale = True  # its stream is open: it may come back

    # ----------------------------------------------------------------- views

    def totals(self) -> tuple[int, int, int]:
        """(workers connected, their slots, their free slots), for metrics."""
        connected = [w for w in self._workers.values() if w.outbox is not None and not w.stale]
        return (
            len(connected),
            sum(w.spec.slots for w in connected),
            sum(w.free for w in connected),
        )

    def served(self) -> dict[str, int]:
        """Executor -> how many connected workers serve it (replicas publish this)."""
        served: dict[str, int] = {}
        for worker in self._workers.values():
            if worker.outbox is not None and not worker.stale:
                for executor in worker.spec.executors:
                    served[executor.id] = served.get(executor.id, 0) + 1
        return served

    def capacity(self, executor: str) -> tuple[int, int]:
        serving = self.workers_serving(executor)
        return len(serving), sum(view.free_slots for view in serving)

    def workers_serving(self, executor: str) -> list[WorkerView]:
        return [
            WorkerView(
                worker.spec.worker_id,
                worker.spec.name,
                dict(worker.spec.labels),
                worker.spec.slots,
                worker.free,
            )
            for worker in self._workers.values()
            if worker.outbox is not None and worker.serves(executor)
        ]


def _conflict(executor: str, why: str) -> ServiceError:
    return ServiceError(
        Code.FAILED_PRECONDITION,
        reasons.EXECUTOR_CONFLICT,
        f"executor {executor!r} cannot be served by this worker: {why}",
        metadata={"executor": executor},
    )


def _assignment(lease: Lease, context: ExecutionContext, deadline_us: int | None) -> Assign:
    return Assign(
        lease_id=lease.id,
        fencing_token=lease.fencing_token,
        task_id=context.task_id,
        root_id=context.root_id,
        name=context.name,
        executor=context.executor,
        attempt=context.attempt,
        user_id=context.user_id,
        inputs=context.inputs,
        params=context.params,
        dependency_results=context.dependency_results,
        deadline_us=deadline_us,
    )
