"""`watch_responses`, the SDK's one WatchEvents resume loop, against a scripted stub: what
it asks for after a break, what it yields, and when it gives up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from taskgrove._watch import watch_responses
from taskgrove.v1 import event_pb2, task_pb2, task_service_pb2

Response = task_service_pb2.WatchEventsResponse


def events(*sequences: int) -> Response:
    return Response(
        events=[event_pb2.TaskEvent(sequence=s, task_id=f"t{s}") for s in sequences],
        sequence=max(sequences),
    )


def chunk(*task_ids: str, sequence: int = 0, complete: bool = False) -> Response:
    return Response(
        snapshot=[task_pb2.Task(id=task_id) for task_id in task_ids],
        sequence=sequence,
        snapshot_complete=complete,
    )


def error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


class Call:
    def __init__(self, script: list[Response | grpc.aio.AioRpcError]) -> None:
        self.script = script
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[Response]:
        return self._run()

    async def _run(self) -> AsyncIterator[Response]:
        for item in self.script:
            if isinstance(item, grpc.aio.AioRpcError):
                raise item
            yield item

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class Stub:
    """One scripted call per WatchEvents; records the requests."""

    def __init__(self, *calls: list[Response | grpc.aio.AioRpcError]) -> None:
        self.calls = [Call(script) for script in calls]
        self.requests: list[task_service_pb2.WatchEventsRequest] = []

    def WatchEvents(self, request: task_service_pb2.WatchEventsRequest) -> Call:
        copy = task_service_pb2.WatchEventsRequest()
        copy.CopyFrom(request)
        self.requests.append(copy)
        return self.calls[len(self.requests) - 1]


async def collect(
    stub: Any, request: task_service_pb2.WatchEventsRequest, **settings: Any
) -> list[Response]:
    responses = watch_responses(stub, request, max_backoff=0, **settings)
    return [response async for response in responses]


async def test_resumes_after_the_last_sequence_and_yields_each_event_once() -> None:
    unavailable = error(grpc.StatusCode.UNAVAILABLE)
    stub = Stub(
        [events(1, 2), events(3), unavailable],
        [events(2, 3, 4), events(5)],  # the server repeats itself
    )
    reconnects: list[grpc.StatusCode] = []
    request = task_service_pb2.WatchEventsRequest(root_id="r")
    got = await collect(stub, request, on_reconnect=lambda e: reconnects.append(e.code()))
    assert [e.sequence for r in got for e in r.events] == [1, 2, 3, 4, 5]
    assert [r.after_sequence for r in stub.requests] == [0, 3]
    assert all(r.root_id == "r" for r in stub.requests)
    assert reconnects == [grpc.StatusCode.UNAVAILABLE]
    assert request.after_sequence == 0  # the caller's request is left alone


async def test_a_snapshot_broken_midway_is_asked_again_and_yielded_whole_once() -> None:
    exhausted = error(grpc.StatusCode.RESOURCE_EXHAUSTED)
    stub = Stub(
        [chunk("a", "b"), exhausted],
        [chunk("a", "b"), chunk("c", sequence=7, complete=True), events(8), exhausted],
        [events(9)],
    )
    request = task_service_pb2.WatchEventsRequest(include_snapshot=True)
    got = await collect(stub, request)
    assert [[t.id for t in r.snapshot] for r in got[:2]] == [["a", "b"], ["c"]]
    assert got[1].snapshot_complete
    assert [e.sequence for r in got[2:] for e in r.events] == [8, 9]
    assert [(r.include_snapshot, r.after_sequence) for r in stub.requests] == [
        (True, 0),
        (True, 0),
        (False, 8),
    ]


async def test_other_codes_and_too_many_failures_in_a_row_raise() -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(Stub([error(grpc.StatusCode.NOT_FOUND)]), _request())
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND

    unavailable = error(grpc.StatusCode.UNAVAILABLE)
    stub = Stub([unavailable], [events(2), unavailable], [unavailable], [events(3)])
    with pytest.raises(grpc.aio.AioRpcError):
        await collect(stub, _request(), max_reconnects=1)
    # A message in between resets the count: the second failure in a row (3rd call) raises.
    assert len(stub.requests) == 3


async def test_leaving_early_cancels_the_call() -> None:
    stub = Stub([events(1), events(2)])
    responses = watch_responses(stub, _request())
    async with contextlib.aclosing(responses):
        async for _ in responses:
            break
    assert stub.calls[0].cancelled


def _request() -> task_service_pb2.WatchEventsRequest:
    return task_service_pb2.WatchEventsRequest(root_id="r")


async def test_async_client_watch_tells_of_each_reconnect_and_of_the_resume() -> None:
    from taskgrove import AsyncClient, TaskgroveError

    def created(sequence: int) -> Response:
        event = event_pb2.TaskEvent(
            sequence=sequence,
            task_id=f"t{sequence}",
            type=event_pb2.TASK_EVENT_TYPE_CREATED,
            status=task_pb2.TASK_STATUS_PENDING,
        )
        return Response(events=[event], sequence=sequence)

    unavailable = error(grpc.StatusCode.UNAVAILABLE)
    stub = Stub([created(1), unavailable], [unavailable], [created(2)], [])
    told: list[tuple[str, int, grpc.StatusCode | None]] = []

    def reconnect(attempt: int, failure: TaskgroveError) -> None:
        told.append(("reconnect", attempt, failure.code))

    client = AsyncClient("127.0.0.1:1")
    client._stub = stub  # type: ignore[assignment]
    got = []
    async for item in client.watch(
        root_id="r",
        max_backoff=0,
        on_reconnect=reconnect,
        on_resume=lambda: told.append(("resume", 0, None)),
    ):
        got.append(item.sequence)
        if item.sequence == 2:
            break
    assert got == [1, 2]  # what is yielded is unchanged
    assert told == [
        ("reconnect", 1, grpc.StatusCode.UNAVAILABLE),
        ("reconnect", 2, grpc.StatusCode.UNAVAILABLE),
        ("resume", 0, None),
    ]
