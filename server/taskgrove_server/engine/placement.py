"""Replicas: a tree goes to where the workers of its executors are.

A worker connects to one replica, and the attempts of its executors can only start on
that replica, whose memory must hold the tree. So every replica says which remote
executors its workers serve (storage/presence.py: rows renewed while they stay, woken
by NOTIFY when they change), and a replica holding a tree whose ready tasks wait for an
executor no worker here serves hands the tree to a replica that has such workers
(`Ownership.hand_over`: under the tree's token, after its last writes). The other
replica adopts it: it loads the tree from the database, as after a takeover, and runs
it there.

A tree moves only while nothing of it runs here, so no attempt is interrupted for it: a
tree that also has work for this replica's own executors moves once that is done. A tree
whose tasks need workers that are connected to different replicas moves between them,
with progress at each stop; serving every executor from workers on every replica (a
load balancer in front of the replicas does that) keeps trees where they are.
"""

from __future__ import annotations

import asyncio
import logging
import time

from taskgrove_server.engine.engine import Engine
from taskgrove_server.executors.workers import WorkerPool
from taskgrove_server.storage.presence import ExecutorPresence
from taskgrove_server.waits import wait_set

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
"""How often a replica looks for trees its workers cannot run, and for a change in what
its own workers serve."""


class Placement:
    def __init__(
        self,
        engine: Engine,
        workers: WorkerPool,
        presence: ExecutorPresence,
        *,
        renew_s: float,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._engine = engine
        self._workers = workers
        self.presence = presence
        """This replica's presence rows (its id is known once the server has a port)."""
        self._renew_s = renew_s
        self._interval_s = interval_s
        self._published: dict[str, int] | None = None
        self._published_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskgrove-placement")

    def wake_for(self, replica_id: str) -> None:
        """NOTIFY: the workers of `replica_id` serve other executors now."""
        if replica_id != self.presence.replica_id:
            self._wake.set()

    async def close(self) -> None:
        """Stop, and say that this replica's workers serve nothing any more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.presence.publish({}, changed=True)
        except Exception as error:  # storage down: the rows expire on their own
            log.warning("withdrawing this replica's executors failed: %s", error)

    async def _run(self) -> None:
        while True:
            await wait_set(self._wake, self._interval_s)
            self._wake.clear()
            try:
                await self._publish()
                await self._place()
            except Exception as error:  # storage down: the writer says so; try again
                log.warning("placing trees by their workers failed: %s", error)

    async def _publish(self) -> None:
        served = self._workers.served()
        changed = self._published is None or served.keys() != self._published.keys()
        now = time.monotonic()
        if changed or served != self._published or now - self._published_at >= self._renew_s:
            await self.presence.publish(served, changed=changed)
            self._published, self._published_at = served, now

    async def _place(self) -> None:
        served = self._published or {}
        stranded = self._engine.stranded(served)
        if not stranded:
            return
        serving = await self.presence.serving(set().union(*stranded.values()))
        if not serving:
            return  # nobody has such workers: the tasks wait (ExplainTask: NO_WORKER)
        for root_id, needs in stranded.items():
            # The replica serving most of what the tree waits for (ties: by id, so that
            # replicas agree).
            replica_id, offers = max(
                serving.items(), key=lambda item: (len(item[1] & needs), item[0])
            )
            if offers & needs and self._engine.hand_over(root_id, replica_id):
                log.info(
                    "tree %s waits for %s: handed to replica %s, which has its workers",
                    root_id,
                    ", ".join(sorted(needs)),
                    replica_id,
                )
