"""StreamTaskLogs: an attempt's stored lines, then (following) its live ones.

Lines are sent in messages of at most MESSAGE_LINES lines; a following stream ends when
the attempt (or, for the latest attempt, the task) ends, or with UNAVAILABLE
`SERVER_SHUTTING_DOWN` when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from taskgrove.domain import reasons
from taskgrove.v1 import task_service_pb2

from taskgrove_server.api.error_mapping import Malformed, abort, malformed_error, service_error
from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.identity import Caller
from taskgrove_server.logs import LogChunk, LogsClosed
from taskgrove_server.service.tasks import Tasks

MESSAGE_LINES = 500
"""Lines per message: 500 of the longest (8,192 characters) stay near 4 MiB."""


def _messages(chunk: LogChunk, first: bool) -> list[task_service_pb2.StreamTaskLogsResponse]:
    messages = []
    lines = chunk.lines
    for start in range(0, max(len(lines), 1), MESSAGE_LINES):
        message = task_service_pb2.StreamTaskLogsResponse(attempt=chunk.attempt)
        for line in lines[start : start + MESSAGE_LINES]:
            added = message.lines.add(sequence=line.sequence, text=line.text)
            added.time.FromMicroseconds(line.time_us)
        messages.append(message)
    if first:
        messages[0].cut_lines = chunk.cut_lines
    messages[-1].attempt_ended = chunk.ended
    return messages


async def stream_task_logs(
    tasks: Tasks,
    request: task_service_pb2.StreamTaskLogsRequest | Malformed,
    context: Any,
    caller: Caller,
) -> None:
    if isinstance(request, Malformed):
        await abort(context, malformed_error(request))
    try:
        chunks = await tasks.logs(request.task_id, request.attempt, request.follow, caller)
    except Exception as exc:
        await abort(context, service_error(exc, "StreamTaskLogs"))
    started: set[int] = set()
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                # An attempt's first message carries its cut count.
                first = chunk.attempt not in started
                started.add(chunk.attempt)
                if not (first or chunk.lines or chunk.ended):
                    continue
                for message in _messages(chunk, first):
                    await context.write(message)
    except LogsClosed:
        await abort(
            context,
            ServiceError(
                Code.UNAVAILABLE,
                reasons.SERVER_SHUTTING_DOWN,
                "the server is shutting down; ask again for the lines after the last one",
            ),
        )
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise
    except Exception as exc:
        await abort(context, service_error(exc, "StreamTaskLogs"))
