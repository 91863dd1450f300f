"""Commands that act on stored tasks: `cancel`, `retry`, `copy`, and `explain` (why a
task is not running yet)."""

from __future__ import annotations

import argparse
import sys

from taskgrove._client import AsyncClient
from taskgrove._models import Task
from taskgrove.cli.output import format_table, print_json, to_jsonable
from taskgrove.cli.session import EXIT_OK
from taskgrove.domain import statuses


def _plural(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


async def cancel_task(client: AsyncClient, args: argparse.Namespace) -> int:
    """Cancel a task and everything unfinished below it; prints what this call cancelled
    (nothing when it was already finished: cancelling is idempotent)."""
    cancelled = await client.cancel_task(args.id)
    if args.json:
        print_json({"cancelled_task_ids": cancelled})
    else:
        print(f"cancelled {_plural(len(cancelled))}")
        for task_id in cancelled:
            print(f"  {task_id}")
    return EXIT_OK


async def retry_task(client: AsyncClient, args: argparse.Namespace) -> int:
    """Run a failed or cancelled task again, with its failed or cancelled descendants and
    the dependents that failed because of them; prints their ids. `--follow`: then
    follow it like `run` (live view, summary, exit codes)."""
    if args.follow:
        from taskgrove.cli.follow import retry_and_follow

        return await retry_and_follow(client, args)
    retried = await client.retry_task(args.id)
    if args.json:
        print_json({"retried_task_ids": retried})
    else:
        print(f"retried {_plural(len(retried))}")
        for task_id in retried:
            print(f"  {task_id}")
    return EXIT_OK


async def copy_tree(client: AsyncClient, args: argparse.Namespace) -> int:
    """Copy a subtree as a new tree whose tasks name their originals; prints the new root
    and the original -> copy ids. `--follow` (implies `--execute`): then follow the copy
    like `run`."""
    copies = await client.copy_task_tree(
        args.id, only_unfinished=args.only_unfinished, execute=args.execute or args.follow
    )
    mapping = {original: copy.id for original, copy in copies.items()}
    top = next((c for c in copies.values() if c.parent_id is None), None)
    if args.follow and top is not None:
        from taskgrove.cli.follow import follow_copy

        if not args.json:
            print(f"copied {_plural(len(copies))} as {top.id}", file=sys.stderr)
        return await follow_copy(client, args, top.id)
    if args.json:
        print_json({"task_ids": mapping})
        return EXIT_OK
    print(f"copied {_plural(len(copies))}" + (f" as {top.id}" if top else ""))
    for original, copy_id in mapping.items():
        print(f"  {original} -> {copy_id}")
    return EXIT_OK


async def explain_task(client: AsyncClient, args: argparse.Namespace) -> int:
    """Say why a task is where it is: not executed, waiting for dependencies (which),
    in retry backoff, held by a concurrency limit, or queued (at which position)."""
    explanation = await client.explain_task(args.id)
    if args.json:
        print_json(to_jsonable(explanation))
        return EXIT_OK
    task = explanation.task
    print(f"{task.name} ({task.id}) is {task.status}: {explanation.summary}")
    if explanation.reasons:
        print(f"reasons: {', '.join(explanation.reasons)}")
    if explanation.waiting_dependencies:
        rows = [
            [
                dep.id,
                dep.name,
                dep.status,
                "required" if dep.required else "optional",
                "yes" if dep.execution_requested else "no",
            ]
            for dep in explanation.waiting_dependencies
        ]
        print("waiting for:")
        print(format_table(["ID", "NAME", "STATUS", "KIND", "EXECUTED"], rows))
    if explanation.queue_position:
        print(f"queue position: {explanation.queue_position}")
    if explanation.retry_time is not None:
        print(f"next attempt at: {explanation.retry_time.astimezone().isoformat()}")
    print(f"running: {explanation.running} of {explanation.concurrency_limit}")
    for line in next_steps(task, explanation.reasons):
        print(line)
    return EXIT_OK


def next_steps(task: Task, reasons: list[str]) -> list[str]:
    """What to do about it: the error of a finished task and the command to run next."""
    lines: list[str] = []
    if task.error is not None and task.status in (statuses.FAILED, statuses.CANCELLED):
        lines.append(f"error: {task.error.reason}: {task.error.message}")
    if "NOT_EXECUTING" in reasons:
        lines.append(f"next: taskgrove execute {task.id}")
    elif task.status in (statuses.FAILED, statuses.CANCELLED):
        lines.append(f"next: taskgrove retry {task.id} --follow")
    elif task.status == statuses.COMPLETED:
        lines.append(f"next: taskgrove copy {task.id} --follow (runs a copy again)")
    return lines
