"""Read-only commands: `get`, `tree`, `ls` and `executors`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from taskgrove._client import AsyncClient
from taskgrove._models import Executor, Task
from taskgrove.cli.history import History, history_lines, task_history
from taskgrove.cli.output import (
    format_duration,
    format_percent,
    format_table,
    print_json,
    stdout_console,
    task_json,
)
from taskgrove.cli.render import ViewOptions, bar_width_for, depth_for_width, render_tree
from taskgrove.cli.session import EXIT_OK
from taskgrove.cli.state import TreeState
from taskgrove.cli.summary import tail

MAX_PAGE_SIZE = 1000


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def attempt_text(task: Task) -> str:
    """`2 of 3`; past `max_attempts` (a `retry` runs one more attempt each time):
    `4 (2 allowed per run; 3 and 4 came from retry)`."""
    if task.attempt == 0:
        return f"none yet ({task.max_attempts} allowed)"
    if task.attempt <= task.max_attempts:
        return f"{task.attempt} of {task.max_attempts}"
    first_retried = task.max_attempts + 1
    which = (
        f"{first_retried}"
        if first_retried == task.attempt
        else f"{first_retried} to {task.attempt}"
    )
    return f"{task.attempt} ({task.max_attempts} allowed per run; {which} came from retry)"


async def dependency_names(client: AsyncClient, task: Task) -> dict[str, str]:
    """The names of a task's dependencies, by id (those that cannot be read are left out)."""
    ids = [str(dep["id"]) for dep in task.dependencies]
    found = await asyncio.gather(*(client.get_task(dep) for dep in ids), return_exceptions=True)
    return {dep: got.name for dep, got in zip(ids, found, strict=True) if isinstance(got, Task)}


def task_lines(
    task: Task, names: dict[str, str] | None = None, history: History | None = None
) -> list[str]:
    """`key  value` lines describing every field of a task (`names`: of its dependencies,
    by id; `history`: its attempts, from its events)."""
    names = names or {}
    rows: list[tuple[str, str]] = [
        ("id", task.id),
        ("name", task.name),
        ("status", task.status),
        ("executor", task.executor or "- (group)"),
        ("parent", task.parent_id or "- (root)"),
        ("root", task.root_id),
        ("owner", task.user_id),
        ("priority", str(task.priority)),
        ("progress", f"{format_percent(task.progress)} {task.progress_message}".rstrip()),
    ]
    if not task.is_group:
        rows.append(("attempt", attempt_text(task)))
        if history is not None:
            rows.extend(history_lines(history, task))
    if task.timeout is not None:
        rows.append(("timeout", format_duration(task.timeout.total_seconds())))
    for index, dep in enumerate(task.dependencies):
        name = names.get(str(dep["id"]))
        text = str(dep["id"]) + (f" {name!r}" if name is not None else "")
        text += "" if dep.get("required", True) else " (optional)"
        rows.append(("dependencies" if index == 0 else "", text))
    if task.original_task_id:
        rows.append(("copied from", task.original_task_id))
    for label, moment in (
        ("created", task.create_time),
        ("started", task.start_time),
        ("ended", task.end_time),
    ):
        if moment is not None:
            rows.append((label, moment.astimezone().isoformat(timespec="milliseconds")))
    if task.start_time is not None and task.end_time is not None:
        duration = format_duration((task.end_time - task.start_time).total_seconds())
        last = history.attempts[-1] if history is not None and history.attempts else None
        if task.attempt > 1 and last is not None and last.start_time and last.end_time:
            own = format_duration((last.end_time - last.start_time).total_seconds())
            duration = f"{own} (the last attempt; {duration} from the first attempt's start)"
        elif task.attempt > 1:
            duration += " (from the first attempt's start, waits between attempts included)"
        rows.append(("duration", duration))
    rows.append(("inputs", _compact(task.inputs)))
    if task.params:
        rows.append(("params", _compact(task.params)))
    if task.result is not None:
        text = json.dumps(task.result, ensure_ascii=False, indent=2)
        rows.append(("result", text.replace("\n", "\n" + " " * 14)))
    if task.error is not None:
        message = task.error.message
        named = task.error.details.get("dependency_id")
        if isinstance(named, str) and named in names:  # DEPENDENCY_FAILED and the like
            message = message.replace(named, f"{named} ({names[named]!r})")
        rows.append(("error", f"{task.error.reason}: {message}"))
        details = dict(task.error.details)
        long = {
            key: details.pop(key) for key in ("stdout", "stderr", "traceback") if key in details
        }
        if details:
            rows.append(("error details", _compact(details)))
        for key, text in long.items():  # the end of each, as lines
            if isinstance(text, str) and text.strip():
                lines = tail(text, 20)
                rows.append((key, "\n".join(lines).replace("\n", "\n" + " " * 14)))
    return [f"{key:<13} {value}" for key, value in rows]


async def get_task(client: AsyncClient, args: argparse.Namespace) -> int:
    """Show one task: every field, its result and error, and each attempt's start, end,
    outcome and error as its events tell (`--json`: the task as JSON, with `attempts`)."""
    task = await client.get_task(args.id)
    history = None if task.is_group else await task_history(client, task)
    if args.json:
        data = task_json(task)
        if history is not None:
            data["attempts"] = [attempt.to_json() for attempt in history.attempts]
            data["history_pruned"] = history.pruned
        print_json(data)
    else:
        names = await dependency_names(client, task)
        print("\n".join(task_lines(task, names, history)))
    return EXIT_OK


def nest(tasks: list[Task]) -> dict[str, Any]:
    """The tasks of `GetTaskTree` (parents first) as one nested JSON object with
    `children` lists."""
    by_id: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] | None = None
    for task in tasks:
        node = {**task_json(task), "children": []}
        by_id[task.id] = node
        parent = by_id.get(task.parent_id) if task.parent_id else None
        if parent is not None:
            parent["children"].append(node)
        elif top is None:
            top = node
    assert top is not None, "GetTaskTree returns at least the task itself"
    return top


async def show_tree(client: AsyncClient, args: argparse.Namespace) -> int:
    """Show the stored subtree of a task with statuses and progress (`--depth N` levels
    below it; `--json`: nested objects with `children`)."""
    tasks = await client.get_task_tree(args.id, max_depth=args.depth)
    if args.json:
        print_json(nest(tasks))
        return EXIT_OK
    state = TreeState()
    state.load(tasks)
    root = state.tasks[tasks[0].id]
    console = stdout_console()
    options = ViewOptions(
        max_children=args.max_children,
        max_rows=0,
        max_depth=depth_for_width(console.width),
        bar_width=bar_width_for(console.width),
    )
    console.print(render_tree(state, root, options))
    return EXIT_OK


async def list_tasks(client: AsyncClient, args: argparse.Namespace) -> int:
    """List tasks, newest first (`--oldest-first`: in creation order), filtered by status,
    owner, parent, name or roots only."""
    limit: int = args.limit
    found: list[Task] = []
    token = ""
    while True:
        want = MAX_PAGE_SIZE if limit <= 0 else min(MAX_PAGE_SIZE, limit - len(found))
        page, token = await client.list_tasks_page(
            statuses=args.status or (),
            parent_id=args.parent or "",
            roots_only=args.roots,
            user_id=args.user or "",
            name_contains=args.name or "",
            page_size=want,
            page_token=token,
            order_by="create_time" if args.oldest_first else "create_time desc",
        )
        found.extend(page)
        if not token or (limit > 0 and len(found) >= limit):
            break
    if limit > 0:
        found = found[:limit]
    if args.json:
        print_json([task_json(task) for task in found])
        return EXIT_OK
    rows = [
        [
            task.id,
            task.name,
            task.status,
            task.executor or "-",
            format_percent(task.progress),
            str(task.priority),
            task.create_time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            if task.create_time
            else "-",
        ]
        for task in found
    ]
    if not rows:
        print("no tasks match", file=sys.stderr)
        return EXIT_OK
    headers = ["ID", "NAME", "STATUS", "EXECUTOR", "PROGRESS", "PRIORITY", "CREATED"]
    print(format_table(headers, rows))
    if token:
        which = "oldest" if args.oldest_first else "newest"
        print(
            f"(more tasks match: showing the {which} {limit}; --limit 0 shows all)",
            file=sys.stderr,
        )
    return EXIT_OK


def _where(executor: Executor) -> str:
    if executor.disabled:
        return "disabled"
    if not executor.remote:
        return "server"
    if not executor.workers:
        return "workers (none connected)"
    return f"{len(executor.workers)} workers, {executor.free_slots} free slots"


def _description(executor: Executor) -> str:
    if executor.disabled:
        return f"{executor.description} To enable: {executor.disabled_reason}."
    return executor.description


async def list_executors(client: AsyncClient, args: argparse.Namespace) -> int:
    """List the executors the server has registered (`--json`: with their input schemas)."""
    executors = await client.list_executors()
    if args.json:
        print_json(executors)
        return EXIT_OK
    rows = [[e.id, _where(e), _description(e)] for e in executors]
    print(format_table(["ID", "RUNS IN", "DESCRIPTION"], rows))
    return EXIT_OK
