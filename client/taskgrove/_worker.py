"""`Worker`: serve executors from this process over WorkerService.

    worker = Worker("images", slots=4)

    @worker.executor("resize", input_schema={"type": "object", "required": ["path"]})
    async def resize(ctx: WorkerContext) -> dict:
        ...

    await worker.run()          # or: taskgrove worker mymodule:worker

Attempts belong to the worker, not to one connection: when the stream breaks, running
attempts go on, the worker reconnects (same id, jittered backoff) and delivers the
outcomes that finished meanwhile; the server's fencing decides whether each still counts
(at most once per attempt). An outcome is resent until the server acknowledges it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import random
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import grpc

from taskgrove._channel import new_channel
from taskgrove._config import ClientConfig
from taskgrove._errors import from_rpc_error
from taskgrove._worker_context import ExecutorFailure, WorkerContext
from taskgrove.domain import reasons, wire
from taskgrove.v1 import worker_service_pb2 as pb
from taskgrove.v1 import worker_service_pb2_grpc

log = logging.getLogger("taskgrove.worker")

Function = Callable[[WorkerContext], Any]
F = TypeVar("F", bound=Function)

_FATAL = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""A registration the server refuses is refused again: reconnecting would not help."""
_LOG_FLUSH_S = 0.05
_MAX_BACKOFF_S = 10.0


@dataclass(frozen=True, slots=True)
class _Served:
    function: Function
    description: str
    input_schema: Mapping[str, Any]


class Worker:
    def __init__(
        self,
        name: str = "python-worker",
        *,
        slots: int = 4,
        labels: Mapping[str, str] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.name = name
        self.slots = slots
        self.labels = dict(labels or {})
        self.worker_id = worker_id or str(uuid.uuid4())
        self._served: dict[str, _Served] = {}
        self._running: dict[str, tuple[asyncio.Task[None], WorkerContext]] = {}
        """Lease id -> the attempt's task and context."""
        self._undelivered: dict[str, pb.ConnectRequest] = {}
        """Outcomes not acknowledged yet, by lease id (resent after a reconnect)."""
        self._logs: dict[str, list[str]] = {}
        self._send: asyncio.Queue[pb.ConnectRequest | None] | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self.registered = asyncio.Event()
        """Set while registered with a server (cleared when the stream breaks)."""

    # ----------------------------------------------------------------- registering

    def executor(
        self,
        executor_id: str,
        *,
        input_schema: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Callable[[F], F]:
        """Serve `executor_id` with the decorated function (async, or sync: run in a
        thread). It returns the task's result (plain JSON) or raises to fail it."""

        def register(function: F) -> F:
            if executor_id in self._served:
                raise ValueError(f"executor {executor_id!r} is served twice")
            self._served[executor_id] = _Served(
                function,
                description or (inspect.getdoc(function) or ""),
                dict(input_schema or {"type": "object"}),
            )
            return function

        return register

    # ----------------------------------------------------------------- running

    def stop(self) -> None:
        """End `run()`: stop taking work, cancel running attempts, disconnect."""
        self._stop.set()

    async def run(self, config: ClientConfig | None = None, *, address: str | None = None) -> None:
        """Serve until `stop()`; reconnects while the server is unreachable. Raises
        TaskgroveError when the server refuses the registration."""
        if not self._served:
            raise ValueError("the worker serves no executor (use @worker.executor)")
        config = config or ClientConfig.from_env(address)
        self._loop = asyncio.get_running_loop()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix=f"taskgrove-{self.name}"
        )
        flusher = asyncio.create_task(self._flush_logs_periodically())
        backoff = 0.1
        try:
            async with new_channel(config) as channel:
                stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
                while not self._stop.is_set():
                    try:
                        await self._connection(stub, config)
                        backoff = 0.1
                    except grpc.aio.AioRpcError as error:
                        if error.code() in _FATAL:
                            raise from_rpc_error(error) from None
                        log.warning(
                            "worker %s: connection lost (%s); reconnecting",
                            self.name,
                            error.code().name,
                        )
                    if self._stop.is_set():
                        break
                    delay = backoff / 2 + random.uniform(0, backoff / 2)
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
                    # cancellation that comes in the turn the event is set.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
                    backoff = min(_MAX_BACKOFF_S, backoff * 2)
        finally:
            flusher.cancel()
            for task, context in self._running.values():
                context.cancelled.set()
                task.cancel()
            await asyncio.gather(
                *(task for task, _ in self._running.values()), return_exceptions=True
            )
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _connection(
        self, stub: worker_service_pb2_grpc.WorkerServiceStub, config: ClientConfig
    ) -> None:
        """One stream: register, then serve what the server sends until it ends."""
        send: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        send.put_nowait(pb.ConnectRequest(register=self._registration()))
        metadata = (("authorization", f"Bearer {config.token}"),) if config.token else None
        call = stub.Connect(_requests(send), metadata=metadata)
        heartbeat: asyncio.Task[None] | None = None
        leaver = asyncio.create_task(self._leave_on_stop(send, call))
        try:
            async for response in call:
                kind = response.WhichOneof("kind")
                if kind == "registered":
                    self._send = send
                    for request in self._undelivered.values():
                        send.put_nowait(request)
                    interval = response.registered.heartbeat_interval_seconds or 5.0
                    heartbeat = asyncio.create_task(self._heartbeat(send, interval))
                    self.registered.set()
                    log.info("worker %s registered (%s)", self.name, self.worker_id)
                elif kind == "assignment":
                    if not self._stop.is_set():
                        self._start(response.assignment)
                elif kind == "assignments":
                    if not self._stop.is_set():
                        for assignment in response.assignments.assignments:
                            self._start(assignment)
                elif kind == "cancel":
                    running = self._running.get(response.cancel.lease_id)
                    if running is not None:
                        running[1].cancelled.set()
                        running[0].cancel()
                elif kind == "acknowledged":
                    self._acknowledged(response.acknowledged)
                elif kind == "acknowledgements":
                    for ack in response.acknowledgements.acknowledgements:
                        self._acknowledged(ack)
        finally:
            self.registered.clear()
            if self._send is send:
                self._send = None
            leaver.cancel()
            if heartbeat is not None:
                heartbeat.cancel()
            send.put_nowait(None)
            call.cancel()

    def _acknowledged(self, ack: pb.OutcomeAcknowledged) -> None:
        self._undelivered.pop(ack.lease_id, None)
        if not ack.accepted:
            log.warning("outcome of lease %s refused: %s", ack.lease_id, ack.reason)

    async def _leave_on_stop(
        self, send: asyncio.Queue[pb.ConnectRequest | None], call: Any
    ) -> None:
        """Stopping: cancel the running attempts and report them (the server runs them
        again), then end the requests; the server closes the stream once it has read them
        (or it is cut after 5 s)."""
        await self._stop.wait()
        for task, context in list(self._running.values()):
            context.cancelled.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in self._running.values()), return_exceptions=True)
        send.put_nowait(None)
        await asyncio.sleep(5)
        call.cancel()

    def _registration(self) -> pb.WorkerRegistration:
        return pb.WorkerRegistration(
            worker_id=self.worker_id,
            name=self.name,
            labels=self.labels,
            slots=self.slots,
            executors=[
                pb.WorkerExecutor(
                    id=executor_id,
                    description=served.description,
                    input_schema=wire.to_struct(dict(served.input_schema)),
                )
                for executor_id, served in self._served.items()
            ],
        )

    async def _heartbeat(
        self, send: asyncio.Queue[pb.ConnectRequest | None], interval: float
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            send.put_nowait(pb.ConnectRequest(heartbeat=pb.WorkerHeartbeat()))

    def _from_any_thread(self, request: pb.ConnectRequest) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._emit, request)

    def _emit(self, request: pb.ConnectRequest) -> None:
        """Send now if connected (else it is lost, unless it is an outcome)."""
        if self._send is not None:
            self._send.put_nowait(request)

    # ----------------------------------------------------------------- attempts

    def _start(self, assignment: pb.Assignment) -> None:
        lease_id = assignment.lease_id
        if lease_id in self._running or lease_id in self._undelivered:
            return  # already ours
        context = WorkerContext(
            task_id=assignment.task_id,
            root_id=assignment.root_id,
            name=assignment.name,
            executor=assignment.executor,
            attempt=assignment.attempt,
            user_id=assignment.user_id,
            inputs=wire.from_struct(assignment.inputs),
            params=wire.from_struct(assignment.params),
            dependency_results={
                task_id: wire.from_value(value)
                for task_id, value in assignment.dependency_results.items()
            },
            deadline=assignment.deadline.ToDatetime(UTC)
            if assignment.HasField("deadline")
            else None,
            _emit_lines=lambda lines: self._log(lease_id, lines),
            _progress=lambda fraction, message: self._from_any_thread(
                pb.ConnectRequest(
                    progress=pb.AttemptProgress(
                        lease_id=lease_id, fraction=fraction, message=message
                    )
                )
            ),
        )
        task = asyncio.create_task(self._attempt(assignment, context), name=f"attempt-{lease_id}")
        self._running[lease_id] = (task, context)

    async def _attempt(self, assignment: pb.Assignment, context: WorkerContext) -> None:
        lease_id = assignment.lease_id
        outcome = pb.AttemptOutcome(lease_id=lease_id, fencing_token=assignment.fencing_token)
        try:
            result = await self._call(self._served[assignment.executor].function, context)
            outcome.result.CopyFrom(wire.to_value(result))
        except asyncio.CancelledError:
            outcome.cancelled.SetInParent()
        except ExecutorFailure as failure:
            outcome.failure.CopyFrom(_failure(failure, failure.reason, failure.details))
        except Exception as error:
            outcome.failure.CopyFrom(
                _failure(error, reasons.EXECUTOR_ERROR, {"type": type(error).__name__})
            )
        finally:
            self._running.pop(lease_id, None)
        self._flush_logs(lease_id)
        request = pb.ConnectRequest(outcome=outcome)
        self._undelivered[lease_id] = request
        self._emit(request)

    async def _call(self, function: Function, context: WorkerContext) -> Any:
        if inspect.iscoroutinefunction(function):
            return await function(context)
        assert self._threads is not None
        future = asyncio.get_running_loop().run_in_executor(self._threads, function, context)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: it was told (context.cancelled); its slot is
            # free only once it returns.
            await asyncio.wait({future})
            raise
        if inspect.isawaitable(result):
            return await result
        return result

    # ----------------------------------------------------------------- logs

    def _log(self, lease_id: str, lines: Sequence[str]) -> None:
        # Called from threads too: hand the lines to the loop.
        self._logs.setdefault(lease_id, []).extend(lines)

    def _flush_logs(self, lease_id: str | None = None) -> None:
        for key in [lease_id] if lease_id is not None else list(self._logs):
            lines = self._logs.pop(key, None) if key is not None else None
            if lines:
                self._emit(pb.ConnectRequest(log=pb.AttemptLog(lease_id=key, lines=lines)))

    async def _flush_logs_periodically(self) -> None:
        while True:
            await asyncio.sleep(_LOG_FLUSH_S)
            self._flush_logs()


def _failure(error: BaseException, reason: str, details: Mapping[str, Any]) -> pb.AttemptFailure:
    message = (
        str(error) if isinstance(error, ExecutorFailure) else f"{type(error).__name__}: {error}"
    )
    failure = pb.AttemptFailure(
        message=message[:2000],
        reason=reason,
        detail="".join(traceback.format_exception(error))[-16_000:],
    )
    with contextlib.suppress(Exception):
        failure.details.CopyFrom(wire.to_struct(dict(details)))
    return failure


async def _requests(
    send: asyncio.Queue[pb.ConnectRequest | None],
) -> AsyncIterator[pb.ConnectRequest]:
    """What is queued, in order, until None; a run of outcomes queued together goes as
    one message (gRPC's cost is per message: it was most of a trivial task's cost)."""
    ended = False
    while not ended:
        request = await send.get()
        if request is None:
            return
        queued = [request]
        while not send.empty():
            more = send.get_nowait()
            if more is None:
                ended = True
                break
            queued.append(more)
        for message in _coalesced(queued):
            yield message


def _coalesced(requests: list[pb.ConnectRequest]) -> list[pb.ConnectRequest]:
    """`requests` with each run of outcomes made one `outcomes` batch (copies: the
    originals are kept to be resent)."""
    out: list[pb.ConnectRequest] = []
    for request in requests:
        previous = out[-1].WhichOneof("kind") if out else None
        if request.WhichOneof("kind") != "outcome" or previous not in ("outcome", "outcomes"):
            out.append(request)
            continue
        if previous == "outcome":
            out[-1] = pb.ConnectRequest(outcomes=pb.OutcomeBatch(outcomes=[out[-1].outcome]))
        out[-1].outcomes.outcomes.append(request.outcome)
    return out


async def run_worker(worker: Worker, config: ClientConfig) -> None:
    """Run `worker` until SIGINT/SIGTERM (the `taskgrove worker` command)."""
    import signal

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run(config)
