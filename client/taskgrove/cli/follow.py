"""`taskgrove execute ID`, `retry ID --follow`, `copy ID --execute --follow` and
`watch ID --tree`: follow a stored tree with `run`'s live view, summary and exit codes."""

from __future__ import annotations

import argparse
import sys

from taskgrove._client import AsyncClient
from taskgrove.cli.run import follow_run
from taskgrove.domain import statuses


async def execute_tree(client: AsyncClient, args: argparse.Namespace) -> int:
    """Execute a pending task with its whole subtree (a copy made without --execute, a
    tree created with the SDK) and follow it like `run`."""
    task = await client.execute_task(args.id)
    return await follow_run(client, args, task.root_id or task.id, top_id=task.id)


async def retry_and_follow(client: AsyncClient, args: argparse.Namespace) -> int:
    """RetryTask once the tree's view is loaded (no event of the retry is missed), then
    follow the retried task to its end."""
    task = await client.get_task(args.id)
    if task.status not in (statuses.FAILED, statuses.CANCELLED):
        await client.retry_task(task.id)  # the server's refusal, before any view is drawn
    retried: list[str] = []

    async def retry() -> bool:
        retried.extend(await client.retry_task(task.id))
        if not args.json:
            count = len(retried)
            print(f"retried {count} task{'' if count == 1 else 's'}", file=sys.stderr)
        return bool(retried)

    return await follow_run(
        client,
        args,
        task.root_id or task.id,
        top_id=task.id,
        extra={"retried_task_ids": retried},
        action=retry,
    )


async def follow_copy(client: AsyncClient, args: argparse.Namespace, top_id: str) -> int:
    """After CopyTaskTree with execute: follow the new tree to its end."""
    return await follow_run(client, args, top_id)


async def watch_tree(client: AsyncClient, args: argparse.Namespace) -> int:
    """Re-attach the live tree view to a tree (or a task's subtree) until it ends."""
    task = await client.get_task(args.id)
    return await follow_run(client, args, task.root_id or task.id, top_id=task.id)
