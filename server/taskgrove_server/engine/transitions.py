"""State changes of loaded tasks, and what they imply for the groups above them.

Every change is decided here in memory and queued on the writer with its event, under the
status guard of the state it left (see storage/writer.py for what happens when the
database refuses it). Finished tasks are collected for the engine to propagate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from taskgrove.domain import reasons, statuses
from taskgrove.domain.aggregation import derived_status

from taskgrove_server.clock import now_us
from taskgrove_server.engine.node import Node
from taskgrove_server.engine.tree_cache import TreeCache
from taskgrove_server.events.event import STATUS_CHANGED
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import UpdateState


def failure(reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A task's `error`: a stable reason, a message and JSON details."""
    return {"reason": reason, "message": message, "details": details}


class Transitions:
    def __init__(self, writer: Writer, cache: TreeCache) -> None:
        self._writer = writer
        self._cache = cache
        self.finished: deque[Node] = deque()
        """Tasks that reached a terminal status, for their dependents to hear of."""
        self.on_finished: Callable[[str], None] | None = None
        """Told the status of every executable task that ends (metrics)."""
        self._unit: UpdateState | None = None
        """The write collecting the state change under way and the group changes it
        implies (see `set_status`)."""

    def persist(self, node: Node, expected: str, event_type: str | None) -> None:
        """Queue the node's state, guarded by `expected`, with an event of `event_type`."""
        if node.detached:
            return  # its tree was let go: the database holds the truth
        unit = self._unit
        if unit is None:
            unit = UpdateState([], [], node.root_id)
            self._writer.queue(unit)
        unit.changes.append(node.state_change(expected))
        if event_type is not None:
            unit.events.append(node.event(event_type, expected))
        node.version += 1

    def set_status(self, node: Node, status: str, *, expected: str | None = None) -> None:
        # A task's change and the group changes it implies (nested calls) are queued as
        # one write: the database takes them together or refuses them together.
        outer = self._unit is None
        if outer:
            self._unit = UpdateState([], [], node.root_id)
        try:
            self._change(node, status, expected)
        finally:
            if outer:
                unit, self._unit = self._unit, None
                if unit is not None and unit.changes:
                    self._writer.queue(unit)

    def _change(self, node: Node, status: str, expected: str | None) -> None:
        old = node.status
        node.status = status
        now = now_us()
        if status == statuses.IN_PROGRESS and node.started_us is None:
            node.started_us = now
        if status in statuses.TERMINAL:
            node.ended_us = now
            self.finished.append(node)
            if not node.is_group and node.execution_requested:
                tree = self._cache.tree(node.root_id)
                if tree is not None:
                    tree.active -= 1
                self._cache.touch(node.root_id)
                if self.on_finished is not None:
                    self.on_finished(status)
        self.persist(node, expected or old, STATUS_CHANGED)
        if not node.is_group:
            self._adjust_ancestors(node, old)

    def finish(
        self,
        node: Node,
        status: str,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        expected: str | None = None,
    ) -> None:
        node.result = result
        node.error = error
        if status == statuses.COMPLETED:
            node.progress = 1.0
        self.set_status(node, status, expected=expected)

    def recover(self, node: Node, message: str) -> None:
        """An in-progress task whose attempt is gone: run it again, or abandon it."""
        if node.attempt < node.max_attempts:
            self.set_status(node, statuses.PENDING)
        else:
            self.finish(
                node,
                statuses.FAILED,
                error=failure(reasons.ABANDONED, message),
                expected=statuses.IN_PROGRESS,
            )

    def carry_progress(self, node: Node) -> None:
        """A running task reported progress: add the difference to its groups."""
        contribution = node.current_contribution()
        delta = contribution - node.contribution
        if delta:
            node.contribution = contribution
            for ancestor in node.ancestors():
                ancestor.progress_total += delta

    def refresh_group(self, group: Node) -> None:
        """Derive a group's status again from its counters (DESIGN section 3)."""
        assert group.counts is not None
        status = derived_status(group.counts, execution_requested=group.execution_requested)
        if status == group.status:
            return
        group.progress = group.group_progress(status)
        if status not in statuses.TERMINAL:
            group.ended_us = None
        self.set_status(group, status)

    def refresh_groups_above(self, nodes: list[Node]) -> None:
        """New or removed tasks change the groups above them."""
        above = {a.id: a for node in nodes for a in node.ancestors() if a.is_group}
        for group in sorted(above.values(), key=_depth, reverse=True):
            self.refresh_group(group)

    def _adjust_ancestors(self, node: Node, old_status: str) -> None:
        """Carry a task's new status (and progress) into the counters of its groups."""
        contribution = node.current_contribution()
        delta = contribution - node.contribution
        node.contribution = contribution
        for ancestor in node.ancestors():
            if ancestor.counts is not None:
                ancestor.counts.add(old_status, -1)
                ancestor.counts.add(node.status)
                ancestor.progress_total += delta
                self.refresh_group(ancestor)


def _depth(node: Node) -> int:
    return sum(1 for _ in node.ancestors())
