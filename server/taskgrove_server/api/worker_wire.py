"""WorkerService messages <-> the plain values of `executors.workers`."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import timestamp_pb2
from taskgrove.domain import reasons, wire
from taskgrove.v1 import worker_service_pb2 as pb

from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.executors.base import ExecutorError
from taskgrove_server.executors.workers import (
    Acknowledge,
    Assign,
    Cancel,
    RemoteExecutorSpec,
    ToWorker,
    WorkerSpec,
)

MAX_DETAIL = 16_384


def registration(message: pb.WorkerRegistration) -> WorkerSpec:
    executors = []
    for index, executor in enumerate(message.executors):
        try:
            schema = wire.from_struct(executor.input_schema) or {"type": "object"}
        except wire.InvalidJsonValue as error:
            raise invalid(
                [
                    FieldViolation(
                        error.field(f"register.executors[{index}].input_schema"),
                        str(error),
                        reasons.INVALID_REGISTRATION,
                    )
                ]
            ) from None
        executors.append(RemoteExecutorSpec(executor.id, executor.description, schema))
    return WorkerSpec(
        worker_id=message.worker_id,
        name=message.name,
        slots=message.slots,
        executors=tuple(executors),
        labels=dict(message.labels),
    )


def failure(message: pb.AttemptFailure, worker_id: str) -> ExecutorError:
    details = {}
    try:
        details = wire.from_struct(message.details)
    except wire.InvalidJsonValue:
        details = {"details": "not plain JSON"}
    if message.detail:
        details["traceback"] = message.detail[:MAX_DETAIL]
    details["worker_id"] = worker_id
    return ExecutorError(
        message.message or "the worker reported a failure",
        reason=message.reason or reasons.EXECUTOR_ERROR,
        details=details,
    )


def _timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)


def _assignment(message: Assign) -> pb.Assignment:
    assignment = pb.Assignment(
        lease_id=message.lease_id,
        fencing_token=message.fencing_token,
        task_id=message.task_id,
        root_id=message.root_id,
        name=message.name,
        executor=message.executor,
        attempt=message.attempt,
        user_id=message.user_id,
        inputs=wire.to_struct(dict(message.inputs)),
        params=wire.to_struct(dict(message.params)),
    )
    for task_id, result in message.dependency_results.items():
        assignment.dependency_results[task_id].CopyFrom(wire.to_value(result))
    if message.deadline_us is not None:
        assignment.deadline.CopyFrom(_timestamp(message.deadline_us))
    return assignment


def _acknowledged(message: Acknowledge) -> pb.OutcomeAcknowledged:
    return pb.OutcomeAcknowledged(
        lease_id=message.lease_id, accepted=message.accepted, reason=message.reason
    )


def to_worker(messages: Sequence[ToWorker]) -> list[pb.ConnectResponse]:
    """Messages for a worker, runs of assignments and of acknowledgements in one
    response each (order kept)."""
    responses: list[pb.ConnectResponse] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        end = index + 1
        while end < len(messages) and type(messages[end]) is type(message):
            end += 1
        run = messages[index:end]
        if isinstance(message, Assign):
            assignments = [_assignment(item) for item in run if isinstance(item, Assign)]
            if len(assignments) == 1:
                responses.append(pb.ConnectResponse(assignment=assignments[0]))
            else:
                batch = pb.AssignmentBatch(assignments=assignments)
                responses.append(pb.ConnectResponse(assignments=batch))
        elif isinstance(message, Acknowledge):
            acks = [_acknowledged(item) for item in run if isinstance(item, Acknowledge)]
            if len(acks) == 1:
                responses.append(pb.ConnectResponse(acknowledged=acks[0]))
            else:
                batch_acks = pb.AcknowledgementBatch(acknowledgements=acks)
                responses.append(pb.ConnectResponse(acknowledgements=batch_acks))
        else:
            for item in run:
                assert isinstance(item, Cancel)
                responses.append(
                    pb.ConnectResponse(
                        cancel=pb.CancelAttempt(lease_id=item.lease_id, reason=item.reason)
                    )
                )
        index = end
    return responses
