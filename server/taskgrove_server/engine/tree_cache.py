"""The trees the engine holds in memory: loading, linking, pinning and letting go.

A tree is loaded while something of it executes, or while an operation holds it (a pin);
once neither is true it is unloaded, and the database is the only copy again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from taskgrove.domain.aggregation import StatusCounts
from taskgrove.domain.statuses import IN_PROGRESS

from taskgrove_server.engine.node import Node, Tree
from taskgrove_server.engine.ownership import Ownership
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.records import TaskRow
from taskgrove_server.storage.writer import Writer

Activate = Callable[[Tree, list[Node]], Awaitable[object]]
"""Called with a tree just loaded (or grown) and its new nodes, before anyone else sees it."""


class TreeCache:
    def __init__(
        self,
        reads: TaskReads,
        writer: Writer,
        activate: Activate,
        ownership: Ownership | None = None,
    ) -> None:
        self._reads = reads
        self._writer = writer
        self._activate = activate
        self._ownership = ownership
        """Replicas: a tree is acquired before it is loaded, released once let go."""
        self._nodes: dict[str, Node] = {}
        self._trees: dict[str, Tree] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._adopt_later: dict[str, list[TaskRow]] = defaultdict(list)
        self._pins: dict[str, int] = defaultdict(int)
        self._touched: set[str] = set()

    # ----------------------------------------------------------------- lookups

    def get(self, task_id: str) -> Node | None:
        return self._nodes.get(task_id)

    def __getitem__(self, task_id: str) -> Node:
        return self._nodes[task_id]

    def tree(self, root_id: str) -> Tree | None:
        return self._trees.get(root_id)

    def trees(self) -> Iterable[Tree]:
        """The loaded trees (for metrics: read, never changed)."""
        return self._trees.values()

    def is_loaded(self, root_id: str) -> bool:
        return root_id in self._trees

    def is_loading(self, root_id: str) -> bool:
        return root_id in self._loading

    def is_idle(self, root_id: str) -> bool:
        """Loaded, with no attempt claimed or running, no pin and no load under way: the
        tree could go to another replica without interrupting anything."""
        tree = self._trees.get(root_id)
        if tree is None or root_id in self._loading or self._pins.get(root_id):
            return False
        counts = tree.root.counts
        if counts is None:  # a root with an executor: it counts nothing below it
            return not any(node.status == IN_PROGRESS and not node.is_group for node in tree.nodes)
        # A root group counts its executable tasks: those neither pending nor finished
        # are in progress (claimed or running).
        return counts.total == counts.pending + counts.terminal

    # ----------------------------------------------------------------- loading

    async def ensure_loaded(self, root_id: str) -> None:
        """Load a tree (once, however many callers ask at the same time). Replicas:
        HeldElsewhere when another replica holds it."""
        while root_id in self._loading:
            await asyncio.shield(self._loading[root_id])
        if root_id in self._trees:
            return
        future = asyncio.get_running_loop().create_future()
        self._loading[root_id] = future
        try:
            if self._ownership is not None:
                await self._ownership.acquire(root_id)
            # The tree may have been let go with its last changes still queued: read it
            # only once they are committed, or the copy would be stale.
            await self._writer.flush()
            nodes = [Node.from_row(row) async for rows in self._reads.tree(root_id) for row in rows]
            if not nodes:
                self._let_go(root_id)
                return  # deleted meanwhile
            tree = self._build(nodes)
            fresh = self._adopt(tree, self._adopt_later.pop(root_id, []))
            await self._activate(tree, [*nodes, *fresh])
            self._touched.add(root_id)
        finally:
            del self._loading[root_id]
            future.set_result(None)

    async def add_rows(self, rows: Sequence[TaskRow], *, new_tree: bool) -> None:
        """Stored tasks (parents first) join their tree if it is loaded or loading; a
        `new_tree` is built from the rows at hand instead of being read back."""
        root_id = rows[0].root_id
        if root_id in self._loading:
            self._adopt_later[root_id].extend(rows)
        elif root_id in self._trees:
            tree = self._trees[root_id]
            fresh = self._adopt(tree, rows)
            await self._activate(tree, fresh)
            self._touched.add(root_id)
        elif new_tree:
            nodes = [Node.from_row(row) for row in rows]
            tree = self._build(nodes)
            await self._activate(tree, nodes)
            self._touched.add(root_id)

    def _build(self, nodes: list[Node]) -> Tree:
        root = next(node for node in nodes if node.parent_id is None)
        tree = Tree(root=root)
        self._trees[root.id] = tree
        self._link(tree, nodes)
        return tree

    def _adopt(self, tree: Tree, rows: Sequence[TaskRow]) -> list[Node]:
        """Tasks created under a loaded tree join it (creation never runs them)."""
        fresh = [Node.from_row(row) for row in rows if row.id not in self._nodes]
        self._link(tree, fresh)
        return fresh

    def _link(self, tree: Tree, nodes: list[Node]) -> None:
        """Attach nodes (parents before children) and count them into their groups."""
        for node in nodes:
            self._nodes[node.id] = node
            tree.nodes.append(node)
            if node.is_group:
                node.counts = StatusCounts()
            if node.parent_id is not None:
                node.parent = self._nodes[node.parent_id]
                node.parent.children.append(node)
            if not node.is_group:
                node.contribution = node.current_contribution()
                for ancestor in node.ancestors():
                    if ancestor.counts is not None:
                        ancestor.counts.add(node.status)
                        ancestor.progress_total += node.contribution

    # ----------------------------------------------------------------- pins

    @contextlib.asynccontextmanager
    async def pinned(self, root_ids: Iterable[str]) -> AsyncIterator[Pin]:
        """Load trees and keep them loaded while an operation awaits."""
        pin = Pin(self)
        try:
            await pin.add(root_ids)
            yield pin
        finally:
            pin.release()

    def _pin(self, root_id: str, delta: int) -> None:
        self._pins[root_id] += delta
        if not self._pins[root_id]:
            del self._pins[root_id]
            self._touched.add(root_id)

    # ----------------------------------------------------------------- letting go

    def touch(self, root_id: str) -> None:
        """The tree changed: check whether it can be let go at the next `unload_idle`."""
        self._touched.add(root_id)

    def unload_idle(self) -> None:
        """Let go of touched trees that have nothing running and no pin."""
        for root_id in self._touched:
            tree = self._trees.get(root_id)
            if (
                tree is not None
                and tree.active == 0
                and root_id not in self._loading
                and not self._pins.get(root_id)
            ):
                self._forget(tree)
                self._let_go(root_id)
        self._touched.clear()

    def drop(self, root_ids: Iterable[str]) -> list[str]:
        """Let go of trees at once, pinned or not (their memory cannot be trusted); returns
        the roots that were loaded."""
        dropped = []
        for root_id in root_ids:
            tree = self._trees.get(root_id)
            if tree is not None:
                self._forget(tree)
                dropped.append(root_id)
        return dropped

    def remove(self, tree: Tree, nodes: Sequence[Node]) -> None:
        """Forget deleted nodes (a subtree; the whole tree when it holds the root)."""
        gone = {node.id for node in nodes}
        for node in nodes:
            self._nodes.pop(node.id, None)
            node.detached = True
        tree.nodes = [node for node in tree.nodes if node.id not in gone]
        if tree.root.id in gone:
            del self._trees[tree.root.id]
            self._let_go(tree.root.id)

    def _let_go(self, root_id: str) -> None:
        """Replicas: the tree is not in memory here any more; its lease can go."""
        if self._ownership is not None:
            self._ownership.release(root_id)

    def _forget(self, tree: Tree) -> None:
        for node in tree.nodes:
            self._nodes.pop(node.id, None)
            node.detached = True
        del self._trees[tree.root.id]


class Pin:
    """Trees an operation holds loaded across its awaits."""

    def __init__(self, cache: TreeCache) -> None:
        self._cache = cache
        self._roots: set[str] = set()

    async def add(self, root_ids: Iterable[str]) -> None:
        for root_id in root_ids:
            if root_id not in self._roots:
                self._roots.add(root_id)
                self._cache._pin(root_id, +1)
                await self._cache.ensure_loaded(root_id)

    def release(self) -> None:
        for root_id in self._roots:
            self._cache._pin(root_id, -1)
        self._roots.clear()
