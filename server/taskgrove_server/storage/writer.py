"""Group commit: every write of the server goes through one writer, which commits whatever
is queued in one transaction as soon as it is free.

Callers queue `Write` records, then either await `flush()` (a request that must answer only
once its change is durable) or register an `after_commit` callback (the engine starts an
executor only once its claim is committed). Callbacks run in commit order.

Failure model (see ARCHITECTURE.md):
- The events of a batch are numbered by the backend inside the transaction (on
  PostgreSQL a counter row, so numbers follow commit order across replicas), stored in the same
  transaction and published only after it commits: a watcher never sees a change that
  could be lost. A rolled-back attempt rolls its numbers back too.
- A *transient* failure (disk full, database locked, connection lost) retries the same
  batch with backoff until it commits; meanwhile `available` is False (health NOT_SERVING,
  new work refused with UNAVAILABLE) and nothing of the batch is visible.
- A *refused* batch (the database rejects a value) is split in halves until the refused
  write is alone; everything else commits. Only the request that queued the refused write
  fails (`flush()` raises WRITE_REFUSED in that request's task), and the trees it touched
  are reported stale so the engine reloads them from what is durable.
- A guarded update that finds the task in another state is refused the same way, without
  an exception: its event is not stored, its tree is reported stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from asyncio import current_task
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from taskgrove.domain import reasons

from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.events.event import Event
from taskgrove_server.probes import CommitProbe
from taskgrove_server.storage.writes import Applied, Write

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


class WriteBackend(Protocol):
    """Where batches are committed (SQL, or memory in unit tests)."""

    async def apply(self, writes: Sequence[Write]) -> Applied:
        """Apply `writes` in order in one transaction and commit it; raise to roll back.
        Numbers the events it stores (`Event.sequence`, `Applied.last_sequence`)."""
        ...

    def is_transient(self, error: BaseException) -> bool:
        """Whether retrying the same batch later may succeed (storage, not the data)."""
        ...

    async def last_sequence(self) -> int:
        """The highest event sequence ever committed (pruned ones included)."""
        ...

    async def close(self) -> None: ...


def write_refused(error: BaseException) -> ServiceError:
    detail = (str(error).strip().splitlines() or [""])[0][:200]
    return ServiceError(
        Code.INVALID_ARGUMENT,
        reasons.WRITE_REFUSED,
        f"the database refused this request's data ({type(error).__name__}: {detail})",
    )


def tree_moved() -> ServiceError:
    return ServiceError(
        Code.UNAVAILABLE,
        reasons.REPLICA_UNAVAILABLE,
        "the tree moved to another replica while this request ran; nothing of it was "
        "stored: try again",
    )


def storage_unavailable() -> ServiceError:
    return ServiceError(
        Code.UNAVAILABLE,
        reasons.STORAGE_UNAVAILABLE,
        "storage is unavailable (e.g. disk full); the server retries by itself, try again later",
    )


class _Abandoned(Exception):
    """Shutting down while storage stays unavailable."""


@dataclass(slots=True)
class _Batch:
    writes: list[Write] = field(default_factory=list)
    scopes: list[object | None] = field(default_factory=list)
    """The asyncio task that queued each write (same index): each RPC runs in a task of
    its own, so a refusal fails that request only. The engine's own writes (from timers,
    attempts, after-commit callbacks) come from tasks that never flush: their refusals
    fail no request."""
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    waiters: list[tuple[asyncio.Future[None], object | None]] = field(default_factory=list)


class Writer:
    def __init__(
        self,
        backend: WriteBackend,
        publish: Callable[[list[Event]], None] | None = None,
        *,
        on_stale: Callable[[set[str]], None] | None = None,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self._backend = backend
        self._publish = publish
        self.on_stale = on_stale
        """Called with the root ids of trees whose queued changes the database refused."""
        self.on_availability = on_availability
        self.on_lost: Callable[[set[str]], None] | None = None
        """Replicas: called with the roots of trees another replica took over, whose
        queued changes were therefore dropped (the engine lets them go)."""
        self.last_sequence = 0
        """Sequence of the last event this writer committed (or, before it committed any,
        the database's head at start); other replicas may have committed higher ones."""
        self.available = True
        """False while a transient storage failure is being retried."""
        self.commits = 0
        """Transactions committed so far (for benchmarks and tests)."""
        self.probe: CommitProbe | None = None
        """Told the size and duration of every commit (metrics)."""
        self._batch = _Batch()
        self._refused: weakref.WeakKeyDictionary[object, ServiceError] = weakref.WeakKeyDictionary()
        """Per request (task): the refusal its next `flush()` reports, even when that
        flush waits on a later batch than the refused write."""
        self._wake = asyncio.Event()
        self._closing = False
        self._close_deadline = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def backend(self) -> WriteBackend:
        """Where batches are committed (the app sets the SQL backend's fence)."""
        return self._backend

    async def start(self) -> None:
        self.last_sequence = await self._backend.last_sequence()
        self._task = asyncio.create_task(self._run(), name="taskgrove-writer")

    async def close(self, give_up_after: float = 10.0) -> None:
        """Commit what is queued, then stop (giving up after `give_up_after` s if storage
        stays unavailable: those waiters get UNAVAILABLE)."""
        self._closing = True
        self._close_deadline = time.monotonic() + give_up_after
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._backend.close()

    def queue(self, write: Write) -> None:
        batch = self._batch
        batch.writes.append(write)
        batch.scopes.append(current_task())
        self._wake.set()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once everything queued so far is committed (or refused)."""
        self._batch.callbacks.append(callback)
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed. Raises WRITE_REFUSED when a
        write this task queued was refused (others' refusals are not its business)."""
        waiter = asyncio.get_running_loop().create_future()
        self._batch.waiters.append((waiter, current_task()))
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._batch = self._batch, _Batch()
            if batch.writes or batch.callbacks or batch.waiters:
                await self._commit(batch)
                # The loop's turn before the next batch: a commit on the loop (a small
                # batch, committer.py) gives it none, and what the commit's callbacks set
                # going would miss the batch. Without it a flat tree's claims went to
                # commits of their own, ahead of the executors they had launched (0 s
                # tasks recorded 22-30 ms at p99 in a 10,000-task tree, against 7).
                await asyncio.sleep(0)
            del batch  # let a large batch's rows and events go while idle
            idle = not (self._batch.writes or self._batch.callbacks or self._batch.waiters)
            if self._closing and idle:
                return

    async def _commit(self, batch: _Batch) -> None:
        refused: dict[object | None, ServiceError] = {}
        stale: set[str] = set()
        try:
            await self._commit_writes(batch.writes, batch.scopes, refused, stale)
        except _Abandoned:
            for waiter, _ in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(storage_unavailable())
            return
        if stale and self.on_stale is not None:
            self.on_stale(stale)
        for scope, error in refused.items():
            if scope is not None:
                self._refused[scope] = error
        for waiter, scope in batch.waiters:
            if waiter.done():
                continue
            if scope is not None and scope in self._refused:
                waiter.set_exception(self._refused.pop(scope))
            else:
                waiter.set_result(None)
        for callback in batch.callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    async def _commit_writes(
        self,
        writes: list[Write],
        scopes: list[object | None],
        refused: dict[object | None, ServiceError],
        stale: set[str],
    ) -> None:
        """Commit `writes`, retrying transient failures and splitting refused batches."""
        if not writes:
            return
        delay = _RETRY_FIRST_S
        while True:
            started = time.perf_counter()
            try:
                applied = await self._backend.apply(writes)
            except Exception as error:
                if self._backend.is_transient(error):
                    self._set_available(False, error)
                    if self._closing and time.monotonic() > self._close_deadline:
                        raise _Abandoned from error
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                if len(writes) == 1:
                    log.error(
                        "the database refused a write (%s): %s", type(writes[0]).__name__, error
                    )
                    refused[scopes[0]] = write_refused(error)
                    stale.update(writes[0].root_ids)
                    return
                middle = len(writes) // 2
                await self._commit_writes(writes[:middle], scopes[:middle], refused, stale)
                await self._commit_writes(writes[middle:], scopes[middle:], refused, stale)
                return
            break
        self._set_available(True)
        self.commits += 1
        elapsed = time.perf_counter() - started
        # The backend numbered the stored events inside the transaction (commit order
        # across replicas); a refused guarded update's events got no number.
        published = [
            event
            for index, write in enumerate(writes)
            if index not in applied.rejected and index not in applied.fenced
            for event in write.events
        ]
        if applied.last_sequence:
            self.last_sequence = applied.last_sequence
        if applied.fenced:
            for index in applied.fenced:
                if scopes[index] is not None:
                    refused.setdefault(scopes[index], tree_moved())
            log.warning(
                "%s writes dropped (%s): trees %s are held by another replica now",
                len(applied.fenced),
                ", ".join(sorted({type(writes[index]).__name__ for index in applied.fenced})),
                ", ".join(sorted(applied.lost)),
            )
            if self.on_lost is not None:
                self.on_lost(applied.lost)
        if applied.rejected:
            for index in applied.rejected:
                stale.update(writes[index].root_ids)
            log.error("%s guarded updates refused; their trees are reloaded", len(applied.rejected))
        if self.probe is not None:
            self.probe.batch_committed(len(writes), len(published), elapsed)
        if published and self._publish is not None:
            self._publish(published)

    def _set_available(self, available: bool, error: BaseException | None = None) -> None:
        if available == self.available:
            return
        self.available = available
        if available:
            log.warning("storage is available again; queued writes committed")
        else:
            log.error("storage unavailable, retrying with backoff: %s", error)
        if self.on_availability is not None:
            self.on_availability(available)
