"""CopyTaskTree: a stored subtree turned back into specs for a fresh tree."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import RowMapping
from taskgrove import statuses

from taskgrove_server.validation import TaskSpec


def copy_specs(rows: Sequence[RowMapping], *, only_unfinished: bool) -> list[TaskSpec]:
    """Specs copying `rows` (a subtree, parents first; the first row is its top).

    The copy's top becomes a root. With `only_unfinished`, completed tasks are left out
    (unless something unfinished lies below them), and dependencies on them keep pointing
    at the originals, whose results are there.
    """
    top = rows[0]
    keep = {row["id"] for row in rows}
    if only_unfinished:
        parents = {row["id"]: row["parent_id"] for row in rows}
        keep = {top["id"]}
        for row in rows:
            if row["executor"] is not None and row["status"] != statuses.COMPLETED:
                node: str | None = row["id"]
                while node is not None and node not in keep:
                    keep.add(node)
                    node = parents.get(node)
    specs = []
    for index, row in enumerate(r for r in rows if r["id"] in keep):
        specs.append(
            TaskSpec(
                ref=row["id"],
                field=f"tasks[{index}]",
                name=row["name"],
                parent=None if row is top else row["parent_id"],
                user_id=row["user_id"],
                executor=row["executor"] or "",
                priority=row["priority"],
                dependencies=[
                    (d["id"], bool(d.get("required", True))) for d in row["dependencies"]
                ],
                inputs=dict(row["inputs"]),
                params=dict(row["params"]),
                max_attempts=row["max_attempts"],
                retry_backoff_ms=row["retry_backoff_ms"],
                timeout_ms=row["timeout_ms"],
                original_task_id=row["id"],
            )
        )
    return specs
