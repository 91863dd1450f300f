"""Which trees this replica holds, when replicas share one PostgreSQL database.

A tree's state lives in the memory of one replica at a time: the one holding its lease
(storage/leases.py). A replica acquires a tree before it loads it, renews what it holds
every third of the lease, and lets go once the tree is unloaded (after its last
changes, through the writer). Every batch the writer commits renews, under row locks,
the leases of the trees it writes and drops the writes of a tree whose token changed:
a replica that was paused past its lease, while another took the tree over, cannot
change it any more. A tree whose holder stopped renewing (killed, paused, cut off) is
claimed by whichever replica sweeps first, and loading it recovers the attempts that
were running there.

A replica's id is its host and port: a replica restarted on the same address takes its
trees back at once (nothing else can listen there), another one after the lease.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from taskgrove.domain import reasons

from taskgrove_server.errors import Code, ServiceError
from taskgrove_server.storage.leases import TreeLeases
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import ReleaseTree
from taskgrove_server.waits import wait_set

log = logging.getLogger(__name__)

_SWEEP_LIMIT = 50
"""Trees claimed per sweep (the rest wait for the next one, a moment later)."""


class HeldElsewhere(ServiceError):
    """Another replica holds the tree: the operation goes there (an RPC that cannot be
    sent there fails with this: UNAVAILABLE, REPLICA_UNAVAILABLE)."""

    def __init__(self, root_id: str, replica_id: str | None) -> None:
        super().__init__(
            Code.UNAVAILABLE,
            reasons.REPLICA_UNAVAILABLE,
            f"tree {root_id} is held by replica {replica_id or '(unknown)'}, which did not "
            "take this request; try again",
            metadata={"replica_id": replica_id or ""},
        )
        self.root_id = root_id
        self.replica_id = replica_id


class Ownership:
    def __init__(self, leases: TreeLeases, writer: Writer) -> None:
        self._leases = leases
        self._writer = writer
        self._held: dict[str, int] = {}
        """Root id -> token of the trees this replica holds."""
        self._releasing: dict[str, int] = {}
        """Trees let go whose release has not committed yet: what is queued before the
        release is still fenced by their token."""
        self._lost: dict[str, int] = {}
        """Trees taken over by another replica, with the token this one had: their
        writes still queued are fenced by it."""
        self.on_lost: Callable[[set[str]], None] = lambda roots: None
        """Called with trees another replica took over (the engine lets them go)."""
        self.on_claimed: Callable[[list[str]], Coroutine[Any, Any, None]] | None = None
        """Called with trees taken over from a replica that stopped (the engine loads
        them)."""
        self._task: asyncio.Task[None] | None = None
        self._loading: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @property
    def replica_id(self) -> str:
        return self._leases.replica_id

    def holds(self, root_id: str) -> bool:
        return root_id in self._held

    async def holder(self, root_id: str) -> str | None:
        """The replica whose lease on the tree is live (None: nobody's)."""
        return await self._leases.holder(root_id)

    def held(self) -> list[str]:
        return list(self._held)

    async def acquire(self, root_id: str) -> None:
        """Hold the tree (a no-op when held); HeldElsewhere while another replica does."""
        if root_id in self._held:
            return
        token = await self._leases.acquire(root_id)
        if token is None:
            raise HeldElsewhere(root_id, await self.holder(root_id))
        if root_id in self._held:  # two acquires at once: the later token wins
            token = max(token, self._held[root_id])
        self._lost.pop(root_id, None)
        self._held[root_id] = token
        log.debug("holding tree %s (token %s)", root_id, token)

    def release(self, root_id: str, *, handover: bool = False) -> None:
        """Let go of the tree once what is queued for it commits; `handover`: it still
        has work (this replica stops), the first sweep of another replica takes it."""
        token = self._held.pop(root_id, None)
        if token is not None:
            log.debug("letting go of tree %s (token %s)", root_id, token)
            self._releasing[root_id] = token
            self._writer.queue(ReleaseTree(root_id, token, handover))
            self._writer.after_commit(lambda: self._released(root_id, token))

    def hand_over(self, root_id: str, replica_id: str) -> None:
        """Give the tree to another replica, which adopts it, once what is queued for it
        commits (engine/placement.py: that replica has the workers it waits for)."""
        token = self._held.pop(root_id, None)
        if token is not None:
            log.info("handing tree %s over to replica %s", root_id, replica_id)
            self._releasing[root_id] = token
            self._writer.queue(ReleaseTree(root_id, token, to=replica_id))
            self._writer.after_commit(lambda: self._released(root_id, token))

    def _released(self, root_id: str, token: int) -> None:
        if self._releasing.get(root_id) == token:
            del self._releasing[root_id]

    def tokens(self, roots: set[str]) -> dict[str, int]:
        """The tokens the writer's fence checks for these roots: those held, and those
        lost (whatever is still queued for them must not commit)."""
        tokens = {}
        for root_id in roots:
            token = self._held.get(root_id) or self._releasing.get(root_id)
            token = token or self._lost.get(root_id)
            if token is not None:
                tokens[root_id] = token
        return tokens

    def lose(self, root_ids: Iterable[str]) -> None:
        """Another replica has these trees now: forget them here."""
        lost = set()
        for root_id in root_ids:
            token = self._held.pop(root_id, None)
            if token is not None:
                self._lost[root_id] = token
                lost.add(root_id)
        if lost:
            log.warning("trees taken over by another replica: %s", ", ".join(sorted(lost)))
            self.on_lost(lost)

    # ----------------------------------------------------------------- lifecycle

    async def take_back(self) -> list[str]:
        """At start: the trees this replica's address held before (a new token fences
        whatever the previous process left queued), executing ones nobody holds (a
        database from before replicas), and those whose holder's lease expired. Returns
        them all, to load."""
        roots = await self._leases.claim_own()
        for root_id in await self._leases.unleased_active(limit=1_000_000):
            token = await self._leases.acquire(root_id)
            if token is not None:
                roots[root_id] = token
        roots.update(await self._leases.claim_expired(limit=1_000_000))
        self._held.update(roots)
        return list(roots)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskgrove-leases")

    def wake_for(self, replica_id: str) -> None:
        """NOTIFY from a replica that let go of its trees (itself excepted)."""
        if replica_id != self.replica_id:
            self._wake.set()

    def adopt_for(self, replica_id: str) -> None:
        """NOTIFY of a tree handed over to `replica_id`: this one adopts it if addressed."""
        if replica_id == self.replica_id:
            self._wake.set()

    async def close(self) -> None:
        tasks = [*self._loading, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        interval = self._leases.ttl_s / 3
        while True:
            # Jitter: replicas started together do not sweep in step.
            await wait_set(self._wake, interval * random.uniform(0.8, 1.0))
            self._wake.clear()
            try:
                await self._renew()
                await self._adopt()
                await self._sweep()
            except Exception as error:  # storage down: the writer says so; try again
                log.warning("renewing tree leases failed: %s", error)

    async def _renew(self) -> None:
        before = dict(self._held)
        if not before:
            return
        current = await self._leases.renew()
        # Judge only what was held before the renewal: an acquire that committed
        # after it started is not in its answer.
        self.lose(
            root_id
            for root_id, token in before.items()
            if current.get(root_id) != token and self._held.get(root_id) == token
        )

    async def _adopt(self) -> None:
        """Load the trees other replicas handed to this one."""
        adopted = await self._leases.claim_adopted()
        if adopted:
            log.info("adopting trees handed over: %s", ", ".join(sorted(adopted)))
            self._take(adopted)

    def _take(self, claimed: dict[str, int]) -> None:
        self._held.update(claimed)
        for root_id in claimed:
            self._lost.pop(root_id, None)
        if self.on_claimed is not None:
            # Loaded beside the renewals: loading many trees must not delay them.
            task = asyncio.create_task(self.on_claimed(list(claimed)), name="taskgrove-takeover")
            self._loading.add(task)
            task.add_done_callback(self._loading.discard)

    async def _sweep(self) -> None:
        # Only expired leases: a replica that stops expires the ones it hands over, and
        # every other tree with work has a live lease (executing acquires it).
        claimed = await self._leases.claim_expired(limit=_SWEEP_LIMIT)
        if not claimed:
            return
        log.warning("took over trees whose replica stopped: %s", ", ".join(sorted(claimed)))
        self._take(claimed)
        if len(claimed) >= _SWEEP_LIMIT:
            self._wake.set()
