"""A worker driven by hand, message by message, over the real WorkerService stream: for
the protocol's edges (stale outcomes, silence, bad registrations)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
from taskgrove.domain import wire
from taskgrove.v1 import worker_service_pb2 as pb
from taskgrove.v1 import worker_service_pb2_grpc


def registration(
    executors: dict[str, dict[str, Any]] | None = None,
    *,
    name: str = "raw",
    slots: int = 1,
    worker_id: str | None = None,
) -> pb.WorkerRegistration:
    executors = {"raw_job": {"type": "object"}} if executors is None else executors
    return pb.WorkerRegistration(
        worker_id=str(uuid.uuid4()) if worker_id is None else worker_id,
        name=name,
        slots=slots,
        executors=[
            pb.WorkerExecutor(id=key, input_schema=wire.to_struct(schema))
            for key, schema in executors.items()
        ],
    )


class RawWorker:
    def __init__(self, address: str) -> None:
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._send: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        self.call: Any = None

    async def _requests(self) -> AsyncIterator[pb.ConnectRequest]:
        while (request := await self._send.get()) is not None:
            yield request

    async def connect(self, register: pb.WorkerRegistration) -> pb.ConnectResponse:
        """Open the stream and register; the first response (raises AioRpcError)."""
        self.call = self._stub.Connect(self._requests())
        self.send(pb.ConnectRequest(register=register))
        return await self.receive()

    def send(self, request: pb.ConnectRequest) -> None:
        self._send.put_nowait(request)

    async def receive(self) -> pb.ConnectResponse:
        async with asyncio.timeout(10):
            response = await self.call.read()
        assert response is not grpc.aio.EOF, "the server ended the stream"
        return response  # type: ignore[no-any-return]

    async def assignments(self, count: int) -> list[pb.Assignment]:
        """The next `count` assignments, sent one per message or in batches."""
        found: list[pb.Assignment] = []
        while len(found) < count:
            response = await self.receive()
            kind = response.WhichOneof("kind")
            assert kind in ("assignment", "assignments"), response
            if kind == "assignment":
                found.append(response.assignment)
            else:
                found.extend(response.assignments.assignments)
        return found

    async def acknowledgements(self, count: int) -> list[pb.OutcomeAcknowledged]:
        """The next `count` acknowledgements, one per message or in batches."""
        found: list[pb.OutcomeAcknowledged] = []
        while len(found) < count:
            response = await self.receive()
            kind = response.WhichOneof("kind")
            assert kind in ("acknowledged", "acknowledgements"), response
            if kind == "acknowledged":
                found.append(response.acknowledged)
            else:
                found.extend(response.acknowledgements.acknowledgements)
        return found

    def heartbeat(self) -> None:
        self.send(pb.ConnectRequest(heartbeat=pb.WorkerHeartbeat()))

    def complete(self, assignment: pb.Assignment, result: Any) -> None:
        self.send(
            pb.ConnectRequest(
                outcome=pb.AttemptOutcome(
                    lease_id=assignment.lease_id,
                    fencing_token=assignment.fencing_token,
                    result=wire.to_value(result),
                )
            )
        )

    async def close(self) -> None:
        self._send.put_nowait(None)
        if self.call is not None:
            self.call.cancel()
        await self._channel.close()
