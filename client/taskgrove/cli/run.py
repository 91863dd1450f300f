"""`taskgrove run FILE`: create a tree from a file, execute it and follow it to the end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from rich.console import Console
from rich.live import Live

from taskgrove._client import AsyncClient
from taskgrove._errors import TaskgroveError, UnavailableError
from taskgrove._models import Snapshot, Task
from taskgrove.cli.output import print_json, stdout_console
from taskgrove.cli.render import ViewOptions, depth_for_width, live_view
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

REFRESH_SECONDS = 0.125


async def follow_tree(client: AsyncClient, root_id: str, state: TreeState) -> None:
    """Load the tree's snapshot into `state`, then apply its events until the root (and so
    the whole tree) has finished."""
    stream = client.watch(root_id=root_id, include_snapshot=True, max_reconnects=WATCH_RECONNECTS)
    async with contextlib.aclosing(stream):
        async for item in stream:
            if isinstance(item, Snapshot):
                state.load(item.tasks, item.sequence)
            else:
                state.apply(item)
            root = state.get(root_id)
            if root is not None and root.is_finished:
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

    def __init__(self, console: Console, state: TreeState, root_id: str, started: float) -> None:
        self.console = console
        self.state = state
        self.root_id = root_id
        self.started = started
        self.live = Live(
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="ellipsis",
        )
        self._tick = 0

    def options(self) -> ViewOptions:
        rows = max(10, self.console.size.height - 4) if self.console.is_terminal else 200
        depth = depth_for_width(self.console.width)
        return ViewOptions(max_children=20, max_rows=rows, max_depth=depth, tick=self._tick)

    def draw(self, *, refresh: bool) -> None:
        wall = time.monotonic() - self.started
        self.live.update(live_view(self.state, self.root_id, wall, self.options()), refresh=refresh)

    async def animate(self) -> None:
        while True:
            self._tick += 1
            self.draw(refresh=True)
            await asyncio.sleep(REFRESH_SECONDS)

    async def follow(self, client: AsyncClient) -> None:
        self.live.start()
        animation = None
        if self.console.is_terminal:
            animation = asyncio.create_task(self.animate())
        try:
            await follow_tree(client, self.root_id, self.state)
        finally:
            if animation is not None:
                animation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await animation
            self.draw(refresh=False)
            self.live.stop()


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
    state = TreeState()
    console = stdout_console()
    live = not args.no_live and not args.json
    try:
        async with asyncio.timeout(args.timeout):
            if live:
                await LiveTree(console, state, root_id, started).follow(client)
            else:
                await follow_tree(client, root_id, state)
    except TimeoutError:
        print(
            f"gave up waiting after {args.timeout:g}s; tree {root_id} keeps running "
            f"(taskgrove watch {root_id})",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except asyncio.CancelledError:
        print(
            f"\nstopped following; tree {root_id} keeps running (taskgrove watch {root_id})",
            file=sys.stderr,
        )
        raise
    wall = time.monotonic() - started
    task_ids = {task.ref: created[task.ref].id for task in tree.tasks}
    stored = await stored_tree(client, root_id)
    summary = RunSummary.of(state, root_id, wall, task_ids=task_ids, stored=stored)
    if args.json:
        print_json(summary.to_json())
    else:
        if live:
            console.print()
        console.print(summary.render())
    return EXIT_OK if summary.succeeded else EXIT_FAILED
