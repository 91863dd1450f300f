"""`taskgrove run FILE`: create a tree from a file, execute it and follow it to the end;
`execute ID`, `retry ID --follow`, `copy ID --execute --follow` and `watch ID --tree`
follow a stored tree the same way (live view, summary, exit codes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from rich.live import Live

from taskgrove._client import AsyncClient
from taskgrove._errors import TaskgroveError, UnavailableError
from taskgrove._models import Snapshot, Task, TaskEvent
from taskgrove.cli.output import print_json, stdout_console
from taskgrove.cli.render import (
    ViewOptions,
    bar_width_for,
    depth_for_width,
    live_view,
    reconnect_notice,
)
from taskgrove.cli.session import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    WATCH_RECONNECTS,
    CommandError,
    error_lines,
    report,
)
from taskgrove.cli.state import TreeState
from taskgrove.cli.summary import RunSummary
from taskgrove.cli.tree_file import TreeFileError, load_tree_file
from taskgrove.cli.watch import event_line

REFRESH_SECONDS = 0.125

Action = Callable[[], Awaitable[bool]]
"""What to do once the tree's snapshot is loaded; False: nothing to follow."""


async def follow_tree(
    client: AsyncClient,
    root_id: str,
    state: TreeState,
    *,
    until_id: str = "",
    on_event: Callable[[TaskEvent], None] | None = None,
    action: Action | None = None,
    on_reconnect: Callable[[int, TaskgroveError], None] | None = None,
    on_resume: Callable[[], None] | None = None,
) -> None:
    """Load the tree's snapshot into `state`, then apply its events until `until_id`
    (default: the root, and so the whole tree) has finished.

    `action` (a retry) runs once the snapshot is loaded, so that no event of what it
    starts is missed; then the end is the one after `until_id` was seen unfinished again
    (the snapshot still shows the end before it). When it says there is nothing to
    follow, this returns at once. `on_reconnect` and `on_resume`: see
    `AsyncClient.watch` (the server went away, and came back)."""
    target = until_id or root_id
    armed = action is None
    stream = client.watch(
        root_id=root_id,
        include_snapshot=True,
        max_reconnects=WATCH_RECONNECTS,
        on_reconnect=on_reconnect,
        on_resume=on_resume,
    )
    async with contextlib.aclosing(stream):
        async for item in stream:
            if isinstance(item, Snapshot):
                state.load(item.tasks, item.sequence)
                if action is not None:
                    if not await action():
                        return
                    action = None
            else:
                state.apply(item)
                if on_event is not None:
                    on_event(item)
            node = state.get(target)
            if node is None:
                continue
            if not node.is_finished:
                armed = True
            elif armed:
                return
    raise CommandError("WATCH_ENDED", "the server ended the event stream before the tree finished")


async def stored_tree(client: AsyncClient, root_id: str) -> list[Task]:
    """The finished tree with its results; [] when it cannot be read in one reply (a very
    large tree): the summary then goes without results."""
    try:
        return await client.get_task_tree(root_id)
    except TaskgroveError:
        return []


class LiveTree:
    """The live view: redrawn from the asyncio loop (never from another thread) a few
    times a second on a terminal; elsewhere only the final tree is printed."""

    def __init__(
        self,
        console: Console,
        state: TreeState,
        root_id: str,
        started: float,
        *,
        top_id: str = "",
        action: Action | None = None,
    ) -> None:
        self.action = action
        self.console = console
        self.state = state
        self.root_id = root_id
        self.top_id = top_id or root_id
        """The task shown and followed to its end (a retried task below the root)."""
        self.started = started
        self.live = Live(
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="ellipsis",
        )
        self._tick = 0
        self.reconnecting = 0
        """The reconnection under way (1, 2, ...) while the server is unreachable; 0: none."""

    def options(self) -> ViewOptions:
        rows = max(10, self.console.size.height - 4) if self.console.is_terminal else 200
        depth = depth_for_width(self.console.width)
        return ViewOptions(
            max_children=20,
            max_rows=rows,
            max_depth=depth,
            bar_width=bar_width_for(self.console.width),
            tick=self._tick,
        )

    def draw(self, *, refresh: bool) -> None:
        wall = time.monotonic() - self.started
        view = live_view(
            self.state, self.top_id, wall, self.options(), reconnecting=self.reconnecting
        )
        self.live.update(view, refresh=refresh)

    async def animate(self) -> None:
        while True:
            self._tick += 1
            self.draw(refresh=True)
            await asyncio.sleep(REFRESH_SECONDS)

    def print_change(self, event: TaskEvent) -> None:
        if event.type == "status_changed":
            node = self.state.get(event.task_id)
            message = self.state.error_message(node) if node is not None and node.error else None
            self.console.print(event_line(event, message), soft_wrap=True)
            self.console.file.flush()

    def on_reconnect(self, attempt: int, error: TaskgroveError) -> None:
        first = not self.reconnecting
        self.reconnecting = attempt
        if self.console.is_terminal:
            self.draw(refresh=True)
        elif first:  # one plain line per outage
            self.console.print(reconnect_notice(attempt), soft_wrap=True)
            self.console.file.flush()

    def on_resume(self) -> None:
        self.reconnecting = 0
        if self.console.is_terminal:
            self.draw(refresh=True)
        else:
            self.console.print("server reachable again", soft_wrap=True)
            self.console.file.flush()

    async def follow(self, client: AsyncClient) -> None:
        self.live.start()
        animation = None
        on_event = None
        if self.console.is_terminal:
            animation = asyncio.create_task(self.animate())
        else:  # a file or a pipe (CI): a plain line per state change, the tree at the end
            on_event = self.print_change
        try:
            await follow_tree(
                client,
                self.root_id,
                self.state,
                until_id=self.top_id,
                on_event=on_event,
                action=self.action,
                on_reconnect=self.on_reconnect,
                on_resume=self.on_resume,
            )
        finally:
            if animation is not None:
                animation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await animation
            self.draw(refresh=False)
            self.live.stop()


class QuietNotices:
    """Without the live view (`--no-live`, `--json`): one line on standard error when the
    server becomes unreachable, one when it is back."""

    def __init__(self) -> None:
        self.reconnecting = False

    def on_reconnect(self, attempt: int, error: TaskgroveError) -> None:
        if not self.reconnecting:
            self.reconnecting = True
            print(reconnect_notice(attempt), file=sys.stderr, flush=True)

    def on_resume(self) -> None:
        self.reconnecting = False
        print("server reachable again", file=sys.stderr, flush=True)


async def run_tree(client: AsyncClient, args: argparse.Namespace) -> int:
    """Create the tree of FILE, execute it, follow it live, and print a summary.

    The summary has the final results (those of tasks nothing depends on) and, in
    `--json`, every result and the file's ids -> task ids.
    Exit 0 when every task completed, 1 when anything failed or was cancelled, 2 when the
    file or the request is invalid (the server's reason is printed), 3 on `--timeout`.
    """
    try:
        tree = load_tree_file(args.file)
    except TreeFileError as error:
        raise CommandError(error.reason, f"{args.file}: {error}") from None
    started = time.monotonic()
    try:
        created = await client.create_task_tree(tree.request(), execute=True)
    except UnavailableError:
        raise
    except TaskgroveError as error:
        report(error_lines(error, client.address, tree.describe_field))
        return EXIT_ERROR
    root_id = created[tree.root.ref].id
    task_ids = {task.ref: created[task.ref].id for task in tree.tasks}
    return await follow_run(client, args, root_id, started=started, task_ids=task_ids)


async def follow_run(
    client: AsyncClient,
    args: argparse.Namespace,
    root_id: str,
    *,
    top_id: str = "",
    started: float | None = None,
    task_ids: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    action: Action | None = None,
) -> int:
    """Follow the tree of `root_id` until `top_id` (default: the root) has finished, live
    unless `args.no_live` or `args.json`, within `args.timeout`; print the summary of
    `top_id`'s subtree (`extra`: more keys of `--json`; `action`: see `follow_tree`).
    Exit 0 if it all completed, 1 if
    anything failed or was cancelled, 3 on `--timeout`."""
    top_id = top_id or root_id
    started = time.monotonic() if started is None else started
    as_json: bool = getattr(args, "json", False)
    live = not getattr(args, "no_live", False) and not as_json
    timeout: float | None = getattr(args, "timeout", None)
    state = TreeState()
    console = stdout_console()
    hint = f"taskgrove watch {top_id} --tree"
    try:
        async with asyncio.timeout(timeout):
            if live:
                view = LiveTree(console, state, root_id, started, top_id=top_id, action=action)
                await view.follow(client)
            else:
                notices = QuietNotices()
                await follow_tree(
                    client,
                    root_id,
                    state,
                    until_id=top_id,
                    action=action,
                    on_reconnect=notices.on_reconnect,
                    on_resume=notices.on_resume,
                )
    except TimeoutError:
        print(
            ("\n" if live else "")
            + f"gave up waiting after {timeout:g}s; tree {root_id} keeps running ({hint})",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except asyncio.CancelledError:
        print(f"\nstopped following; tree {root_id} keeps running ({hint})", file=sys.stderr)
        raise
    wall = time.monotonic() - started
    stored = await stored_tree(client, top_id)
    summary = RunSummary.of(state, top_id, wall, task_ids=task_ids, stored=stored)
    if as_json:
        print_json({**summary.to_json(), **(extra or {})})
    else:
        if live:
            console.print()
        console.print(summary.render())
    return EXIT_OK if summary.succeeded else EXIT_FAILED
