"""CopyTaskTree: a stored subtree turned back into specs for a fresh tree."""

from __future__ import annotations

from collections.abc import Sequence

from taskgrove.domain import statuses

from taskgrove_server.service.specs import TaskSpec, spec_from_stored
from taskgrove_server.storage.records import TaskRow


def copy_specs(rows: Sequence[TaskRow], *, only_unfinished: bool) -> list[TaskSpec]:
    """Specs copying `rows` (a subtree, parents first; the first row is its top).

    The copy's top becomes a root. With `only_unfinished`, completed tasks are left out
    (unless something unfinished lies below them), and dependencies on them keep pointing
    at the originals, whose results are there.
    """
    top = rows[0]
    keep = {row.id for row in rows}
    if only_unfinished:
        parents = {row.id: row.parent_id for row in rows}
        keep = {top.id}
        for row in rows:
            if not row.is_group and row.status != statuses.COMPLETED:
                node: str | None = row.id
                while node is not None and node not in keep:
                    keep.add(node)
                    node = parents.get(node)
    specs = []
    for index, row in enumerate(r for r in rows if r.id in keep):
        spec = spec_from_stored(row, f"tasks[{index}]", None if row is top else row.parent_id)
        spec.original_task_id = row.id
        specs.append(spec)
    return specs
