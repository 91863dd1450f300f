"""WorkerService: one stream per worker, between the wire and the `WorkerPool`.

The stream is read by its own task (reports from the worker) while the handler yields
what the pool queues for the worker (assignments, cancellations, acknowledgements), so
neither direction waits for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from taskgrove.domain import reasons, wire
from taskgrove.v1 import worker_service_pb2 as pb
from taskgrove.v1 import worker_service_pb2_grpc

from taskgrove_server.api import worker_wire
from taskgrove_server.api.error_mapping import Malformed, abort, malformed_error, service_error
from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.executors.base import ExecutorError
from taskgrove_server.executors.workers import Close, ConnectedWorker, ToWorker, WorkerPool

log = logging.getLogger(__name__)


class WorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Any
    ) -> AsyncIterator[pb.ConnectResponse]:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        if isinstance(first, Malformed):
            await abort(context, malformed_error(first))
        if first.WhichOneof("kind") != "register":
            await abort(
                context,
                ServiceError(
                    Code.INVALID_ARGUMENT,
                    reasons.INVALID_REGISTRATION,
                    "the first message of a worker's stream must be `register`",
                ),
            )
        outbox: asyncio.Queue[ToWorker] = asyncio.Queue()
        try:
            spec = worker_wire.registration(first.register)
            worker = await self._pool.connect(spec, outbox)
        except Exception as error:
            await abort(context, service_error(error, "WorkerService.Connect"))
        reader = asyncio.create_task(self._read(worker, request_iterator))
        try:
            yield pb.ConnectResponse(
                registered=pb.WorkerRegistered(
                    worker_id=spec.worker_id,
                    heartbeat_interval_seconds=self._pool.heartbeat_interval_s,
                    lease_timeout_seconds=self._pool.lease_timeout_s,
                )
            )
            while True:
                message = await _next(outbox, reader)
                if message is None or isinstance(message, Close):
                    break
                # Whatever else is queued goes too: runs of assignments and of
                # acknowledgements travel as one message each.
                batch, closing = [message], False
                while not outbox.empty():
                    more = outbox.get_nowait()
                    if isinstance(more, Close):
                        closing = True
                        break
                    batch.append(more)
                for response in worker_wire.to_worker(batch):
                    yield response
                if closing:
                    break
            ended = reader.done() and not reader.cancelled()
            if ended and isinstance(broke := reader.exception(), _MalformedMessage):
                await abort(context, malformed_error(broke.request))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._pool.disconnect(worker, outbox)

    async def _read(
        self, worker: ConnectedWorker, requests: AsyncIterator[pb.ConnectRequest]
    ) -> None:
        pool = self._pool
        async for request in requests:
            if isinstance(request, Malformed):
                raise _MalformedMessage(request)  # the stream ends: the worker reconnects
            pool.seen(worker)
            kind = request.WhichOneof("kind")
            if kind == "outcome":
                self._outcome(worker, request.outcome)
            elif kind == "outcomes":
                for outcome in request.outcomes.outcomes:
                    self._outcome(worker, outcome)
            elif kind == "accepted":
                pool.accepted(worker, request.accepted.lease_id)
            elif kind == "progress":
                progress = request.progress
                pool.progress(worker, progress.lease_id, progress.fraction, progress.message)
            elif kind == "log":
                pool.log_lines(worker, request.log.lease_id, request.log.lines)
            # heartbeat (and a second `register`): being seen is all it does

    def _outcome(self, worker: ConnectedWorker, outcome: pb.AttemptOutcome) -> None:
        pool = self._pool
        which = outcome.WhichOneof("outcome")
        if which == "result":
            try:
                value = wire.from_value(outcome.result)
            except wire.InvalidJsonValue as error:
                ack = pool.outcome(
                    worker,
                    outcome.lease_id,
                    outcome.fencing_token,
                    failure=ExecutorError(
                        f"result is not plain JSON: {error}", reason=reasons.INVALID_RESULT
                    ),
                )
            else:
                ack = pool.outcome(worker, outcome.lease_id, outcome.fencing_token, result=value)
        elif which == "failure":
            ack = pool.outcome(
                worker,
                outcome.lease_id,
                outcome.fencing_token,
                failure=worker_wire.failure(outcome.failure, worker.spec.worker_id),
            )
        else:  # cancelled, or nothing said: the slot is free either way
            ack = pool.outcome(worker, outcome.lease_id, outcome.fencing_token, cancelled=True)
        if worker.outbox is not None:
            worker.outbox.put_nowait(ack)


class _MalformedMessage(Exception):
    def __init__(self, request: Malformed) -> None:
        super().__init__(str(request.error))
        self.request = request


async def _next(outbox: asyncio.Queue[ToWorker], reader: asyncio.Task[None]) -> ToWorker | None:
    """The next message for the worker, or None once the worker's side has ended."""
    if not outbox.empty():
        return outbox.get_nowait()
    getter = asyncio.ensure_future(outbox.get())
    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    if not reader.cancelled() and (error := reader.exception()) is not None:
        log.debug("worker stream ended: %r", error)
    return None
