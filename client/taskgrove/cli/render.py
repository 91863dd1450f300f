"""Rich views of a task tree: the live view of `run`, the `tree` command, the summary.

Large trees stay small on screen: a group shows at most `max_children` children (running
and failed ones first) and a line `… N more (x completed, y running)` for the rest, and the
whole view stops adding rows after `max_rows`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from taskgrove.cli.output import format_duration, format_percent
from taskgrove.cli.state import TaskNode, TreeState
from taskgrove.domain import statuses

SYMBOLS: dict[str, tuple[str, str]] = {
    statuses.PENDING: ("○", "dim"),
    statuses.IN_PROGRESS: ("◐", "yellow"),
    statuses.COMPLETED: ("✔", "green"),
    statuses.FAILED: ("✖", "red"),
    statuses.CANCELLED: ("⊘", "magenta"),
}
_SPINNER = "◐◓◑◒"
MAX_WAITS_NAMED = 3
"""Unfinished dependencies a pending row names (`waits for a, b, c +2`)."""
# Which children of a crowded group are shown first: the ones that need attention.
_RANK = {
    statuses.IN_PROGRESS: 0,
    statuses.FAILED: 1,
    statuses.CANCELLED: 2,
    statuses.PENDING: 3,
    statuses.COMPLETED: 4,
}
_COUNT_WORDS = (
    (statuses.COMPLETED, "completed"),
    (statuses.IN_PROGRESS, "running"),
    (statuses.PENDING, "pending"),
    (statuses.FAILED, "failed"),
    (statuses.CANCELLED, "cancelled"),
)


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """How much of a tree to show."""

    max_children: int = 20
    """Children shown per group (0: all)."""
    max_rows: int = 200
    """Rows of the whole tree (0: no limit)."""
    max_depth: int = 19
    """Levels shown below the top (0: no limit); deeper children are summarised in a line
    `… N more levels`. Rich indents every level: a deep tree must fit the width."""
    show_ids: bool = True
    bar_width: int = 16
    """Width of a group's progress bar (narrower on narrow consoles: rows carry whole ids)."""
    tick: int = 0
    """Animation frame for running tasks."""


def symbol(status: str, tick: int = 0) -> Text:
    glyph, style = SYMBOLS.get(status, ("?", ""))
    if status == statuses.IN_PROGRESS:
        glyph = _SPINNER[tick % len(_SPINNER)]
    return Text(glyph, style=style)


def status_text(status: str) -> Text:
    return Text(status, style=SYMBOLS.get(status, ("", ""))[1])


def count_summary(counts: Counter[str], *, skip_zero: bool = True) -> str:
    """`3 completed, 1 running` from statuses counted."""
    parts = [
        f"{counts.get(status, 0)} {word}"
        for status, word in _COUNT_WORDS
        if counts.get(status, 0) > 0 or not skip_zero
    ]
    return ", ".join(parts)


def elapsed(node: TaskNode, now: datetime) -> str:
    """How long the task ran (so far, while it runs); "" when it never started."""
    if node.start_time is None:
        return ""
    if node.end_time is not None:
        return format_duration((node.end_time - node.start_time).total_seconds())
    if node.status == statuses.IN_PROGRESS:
        return format_duration((now - node.start_time).total_seconds())
    return ""


def bar_fraction(node: TaskNode) -> float:
    """How much of a group's bar is filled: its subtree's progress while it runs; once it
    ended failed or cancelled, only what completed (a finished failure is not progress)."""
    if node.status in (statuses.FAILED, statuses.CANCELLED) and node.total:
        return node.counts.get(statuses.COMPLETED, 0) / node.total
    return node.subtree_progress


def progress_bar(fraction: float, width: int = 20, *, failed: bool = False) -> ProgressBar:
    """A bar; red when something below failed."""
    completed = max(0.0, min(1.0, fraction))
    if failed:
        return ProgressBar(
            total=1.0,
            completed=completed,
            width=width,
            complete_style="red",
            finished_style="red",
        )
    return ProgressBar(total=1.0, completed=completed, width=width)


def node_label(
    state: TreeState,
    node: TaskNode,
    options: ViewOptions,
    now: datetime,
    *,
    partial: bool = False,
) -> RenderableType:
    """One row: symbol, name, id, and a progress bar (groups) or progress (tasks).
    `partial`: the subtree is not all loaded (`tree --depth`), so no counts are shown."""
    head = Text.assemble(symbol(node.status, options.tick), " ", Text(node.name, style="bold"))
    if options.show_ids:
        head.append(f" {node.id}", style="dim")
    tail = Text()
    if partial:
        tail.append(" ")
        tail.append_text(status_text(node.status))
        if not node.children:
            tail.append(" …", style="dim")
    elif node.is_group:
        done = node.counts.get(statuses.COMPLETED, 0)
        tail.append(f" {format_percent(node.subtree_progress):>4} {done}/{node.total}")
        failed = node.counts.get(statuses.FAILED, 0)
        if failed:
            tail.append(f" {failed} failed", style="red")
    elif node.status == statuses.IN_PROGRESS:
        tail.append(f" {format_percent(node.progress):>4}", style="yellow")
        if node.progress_message:
            tail.append(f" {node.progress_message}", style="dim")
    waits = state.waiting_for(node)
    if waits:
        shown = ", ".join(waits[:MAX_WAITS_NAMED])
        more = len(waits) - MAX_WAITS_NAMED
        tail.append(f" waits for {shown}" + (f" +{more}" if more > 0 else ""), style="dim")
    backoff = node.status == statuses.PENDING and node.attempt >= 1 and node.error is not None
    if backoff and node.error is not None:  # an attempt failed, another one comes
        tail.append(
            f" ↻ retrying after attempt {node.attempt}: {node.error.reason}: "
            f"{state.error_message(node)}",
            style="yellow",
        )
    elif node.attempt > 1:
        tail.append(f" attempt {node.attempt}", style="dim")
    duration = elapsed(node, now)
    if duration:
        tail.append(f" {duration}", style="dim")
    if node.error is not None and node.status in (statuses.FAILED, statuses.CANCELLED):
        tail.append(f"  {node.error.reason}: {state.error_message(node)}", style="red")
    if partial or not node.is_group or not node.total:
        return Text.assemble(head, tail)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=options.bar_width)
    grid.add_column()
    failed = node.counts.get(statuses.FAILED, 0) > 0
    bar = progress_bar(bar_fraction(node), options.bar_width, failed=failed)
    grid.add_row(head, bar, tail)
    return grid


def pick_children(node: TaskNode, limit: int) -> list[TaskNode]:
    """The children to show: all when they fit, else running, failed, cancelled, pending,
    then completed ones first, shown in their creation order."""
    children = list(node.children.values())
    if limit <= 0 or len(children) <= limit:
        return children
    chosen = heapq.nsmallest(
        limit, children, key=lambda child: (_RANK.get(child.status, 5), child.order)
    )
    return sorted(chosen, key=lambda child: child.order)


def more_line(node: TaskNode, shown: list[TaskNode]) -> Text:
    hidden = Counter(node.child_statuses)
    for child in shown:
        hidden[child.status] -= 1
    count = sum(value for value in hidden.values() if value > 0)
    return Text(f"… {count} more ({count_summary(hidden)})", style="dim italic")


@dataclass(slots=True)
class _Level:
    """A group being filled in: its branch of the view and the children to show."""

    branch: Tree
    node: TaskNode
    shown: list[TaskNode]
    depth: int
    """Levels below the top of the view (the top is 0)."""
    index: int = 0


def render_tree(
    state: TreeState, root: TaskNode, options: ViewOptions, now: datetime | None = None
) -> Tree:
    """The subtree of `root`, within `options.max_children`, `options.max_rows` and
    `options.max_depth`. Built without recursion (a parent chain 1,000 deep)."""
    moment = now or datetime.now(UTC)
    partial = _partial_subtrees(root)
    tree = Tree(
        node_label(state, root, options, moment, partial=root.id in partial), guide_style="dim"
    )
    budget = options.max_rows - 1 if options.max_rows > 0 else -1
    stack = [_Level(tree, root, pick_children(root, options.max_children), 0)]
    while stack:
        level = stack[-1]
        if level.index == len(level.shown):
            stack.pop()
            if len(level.shown) < len(level.node.children):
                level.branch.add(more_line(level.node, level.shown))
            continue
        if budget == 0:
            stack.pop()
            level.branch.add(more_line(level.node, level.shown[: level.index]))
            continue
        budget -= 1
        child = level.shown[level.index]
        level.index += 1
        sub = level.branch.add(
            node_label(state, child, options, moment, partial=child.id in partial)
        )
        if not child.children:
            continue
        if 0 < options.max_depth <= level.depth + 1:
            sub.add(deeper_line(child))
        else:
            shown = pick_children(child, options.max_children)
            stack.append(_Level(sub, child, shown, level.depth + 1))
    return tree


def levels_below(node: TaskNode) -> int:
    """How many levels of loaded descendants `node` has."""
    levels, frontier = 0, list(node.children.values())
    while frontier:
        levels += 1
        frontier = [grandchild for child in frontier for grandchild in child.children.values()]
    return levels


def deeper_line(node: TaskNode) -> Text:
    """What stands for the children of a node at the deepest level shown."""
    return Text(f"… {levels_below(node)} more levels (use --depth / --json)", style="dim italic")


def bar_width_for(width: int) -> int:
    """A group's bar: 16 columns on a wide console, 8 below 110 (an id takes 37)."""
    return 16 if width >= 110 else 8


def depth_for_width(width: int) -> int:
    """Levels of a tree that fit `width` columns: every level indents by 4, and the
    deepest labels (the `… N more levels` line one level further) keep 40 columns."""
    return max(1, (width - 40) // 4 - 1)


def _partial_subtrees(root: TaskNode) -> set[str]:
    """Ids of the nodes whose subtree has children that are not loaded."""
    partial: set[str] = set()
    for node in root.walk():
        if node.has_children and not node.children:
            for ancestor in node.ancestors_and_self():
                if ancestor.id in partial:
                    break
                partial.add(ancestor.id)
                if ancestor is root:
                    break
    return partial


def overall_line(root: TaskNode, wall_seconds: float | None, tick: int = 0) -> RenderableType:
    """Status, overall progress bar, counts by status and elapsed wall time."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=30)
    grid.add_column()
    head = Text.assemble(symbol(root.status, tick), " ", Text(root.name, style="bold"))
    counts = Text(f"{format_percent(root.subtree_progress):>4}  ")
    counts.append(count_summary(root.counts) or "nothing to run")
    counts.append(f"  ({root.total} tasks)", style="dim")
    if wall_seconds is not None:
        counts.append(f"  {format_duration(wall_seconds)}", style="dim")
    failed = root.counts.get(statuses.FAILED, 0) > 0
    grid.add_row(head, progress_bar(bar_fraction(root), 30, failed=failed), counts)
    return grid


def reconnect_notice(attempt: int) -> str:
    """The line shown while the server cannot be reached (`attempt`: 1, 2, ...)."""
    return f"server unreachable, reconnecting ({attempt})…"


def live_view(
    state: TreeState,
    root_id: str,
    wall_seconds: float,
    options: ViewOptions,
    *,
    reconnecting: int = 0,
) -> RenderableType:
    """What `run` shows while the tree runs: the overall line above the tree, and above
    it a notice while the server is unreachable (`reconnecting`: the attempt, 0: none)."""
    notice = [Text(reconnect_notice(reconnecting), style="bold yellow")] if reconnecting else []
    root = state.get(root_id)
    if root is None:
        return Group(*notice, Text("waiting for the tree…", style="dim"))
    return Group(
        *notice,
        overall_line(root, wall_seconds, options.tick),
        Text(""),
        render_tree(state, root, options),
    )
