"""`taskgrove watch [ID]`: print a tree's (or a task's) events as they happen."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rich.text import Text

from taskgrove._client import AsyncClient
from taskgrove._models import Snapshot, Task, TaskEvent
from taskgrove.cli.output import (
    dumps,
    event_json,
    format_percent,
    format_time,
    stdout_console,
)
from taskgrove.cli.render import status_text
from taskgrove.cli.session import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    WATCH_RECONNECTS,
    CommandError,
)
from taskgrove.domain import statuses

IDLE_CHECK_SECONDS = 1.0
"""With `--until-done`, how long the stream may stay quiet before the task is looked up
(its final event may lie before `--after`, or have been compacted away)."""
DRAIN_SECONDS = 0.5
"""After such a look-up found the task finished: how long to wait for events in flight."""


def event_line(event: TaskEvent, message: str | None = None) -> Text:
    """`   42  12:00:01.250  fetch 01a2…  pending -> in_progress  40% message  REASON: …`
    (`message`: the error's message as it should read, e.g. with a dependency's name)."""
    line = Text(f"{event.sequence:>6}  {format_time(event.time)}  ")
    line.append(event.name, style="bold")
    line.append(f" {event.task_id}  ", style="dim")
    if event.type == "status_changed":
        line.append_text(status_text(event.previous_status or "-"))
        line.append(" -> ")
        line.append_text(status_text(event.status))
    elif event.type == "created":
        line.append("created ")
        line.append_text(status_text(event.status))
    elif event.type == "deleted":
        line.append("deleted", style="dim")
    else:
        line.append(event.type)
    show_progress = not event.is_group and (
        event.type == "progress" or event.status == statuses.IN_PROGRESS
    )
    if show_progress:
        line.append(f"  {format_percent(event.progress)}")
        if event.progress_message:
            line.append(f" {event.progress_message}", style="dim")
    if event.attempt > 1:
        line.append(f"  attempt {event.attempt}", style="dim")
    if event.error is not None and event.type == "status_changed":
        text = event.error.message if message is None else message
        line.append(f"  {event.error.reason}: {text}", style="red")
    return line


@dataclass(slots=True)
class _End:
    """The stream ended (or failed with `error`)."""

    error: BaseException | None = None


async def _pump(
    stream: AsyncIterator[TaskEvent | Snapshot], queue: asyncio.Queue[TaskEvent | _End]
) -> None:
    try:
        async for item in stream:
            if isinstance(item, TaskEvent):
                await queue.put(item)
        await queue.put(_End())
    except Exception as error:
        await queue.put(_End(error))


class EventPrinter:
    """Prints events as text lines or JSON lines, flushing each one."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.console = stdout_console(soft_wrap=True)

    def print(self, event: TaskEvent) -> None:
        if self.as_json:
            print(dumps(event_json(event)), flush=True)
        else:
            self.console.print(event_line(event))
            sys.stdout.flush()


async def watch_events(client: AsyncClient, args: argparse.Namespace) -> int:
    """Print events of ID's tree (ID a root) or of the task ID, or of every task (of
    `--user`) without ID: replayed history after `--after`, then live, until interrupted.

    With `--until-done`, exit when the watched root or task has finished: 0 if it
    completed, 1 if it failed or was cancelled. With `--tree`: `run`'s live tree view of
    ID's subtree and its summary instead, until it has finished (exit codes as `run`).
    """
    if args.tree:
        if not args.id:
            raise CommandError("INVALID_ARGUMENT", "--tree needs the ID of a task or a tree")
        from taskgrove.cli.follow import watch_tree

        return await watch_tree(client, args)
    target: Task | None = await client.get_task(args.id) if args.id else None
    if args.until_done and target is None:
        raise CommandError("INVALID_ARGUMENT", "--until-done needs the ID of a task or a tree")
    stream = client.watch(
        root_id=target.id if target is not None and target.parent_id is None else "",
        task_id=target.id if target is not None and target.parent_id is not None else "",
        user_id=args.user or "",
        after_sequence=args.after,
        max_reconnects=WATCH_RECONNECTS,
    )
    printer = EventPrinter(as_json=args.json)
    queue: asyncio.Queue[TaskEvent | _End] = asyncio.Queue(maxsize=10_000)
    async with contextlib.aclosing(stream):
        pump = asyncio.create_task(_pump(stream, queue))
        try:
            async with asyncio.timeout(args.timeout):
                status = await _consume(client, queue, printer, target, args.until_done)
        except TimeoutError:
            print(f"gave up waiting after {args.timeout:g}s", file=sys.stderr)
            return EXIT_TIMEOUT
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    if status is None:
        return EXIT_OK
    return EXIT_OK if status == statuses.COMPLETED else EXIT_FAILED


async def _consume(
    client: AsyncClient,
    queue: asyncio.Queue[TaskEvent | _End],
    printer: EventPrinter,
    target: Task | None,
    until_done: bool,
) -> str | None:
    """Print events; with `until_done`, return the target's final status once finished."""
    finished_at: float | None = None  # when a look-up found the target finished
    finished_status = ""
    while True:
        wait = IDLE_CHECK_SECONDS
        if finished_at is not None:
            wait = max(0.0, finished_at + DRAIN_SECONDS - time.monotonic())
        try:
            item = await asyncio.wait_for(queue.get(), wait) if until_done else await queue.get()
        except TimeoutError:
            if finished_at is not None:
                return finished_status
            assert target is not None
            task = await client.get_task(target.id)
            if task.is_finished:
                finished_at, finished_status = time.monotonic(), task.status
            continue
        if isinstance(item, _End):
            if item.error is not None:
                raise item.error
            if until_done:
                raise CommandError("WATCH_ENDED", "the server ended the event stream")
            return None
        printer.print(item)
        if (
            until_done
            and target is not None
            and item.task_id == target.id
            and item.type == "status_changed"
            and item.status in statuses.TERMINAL
        ):
            return item.status
