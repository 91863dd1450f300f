"""Tree leases on PostgreSQL: which replica holds a tree in memory, until when, and the
fencing token of that hold (SQL only here; the policy is engine/ownership.py).

A claim of a tree by another replica (or by the same one after it lost the tree) gets a
new token; a write of the tree commits only while the row still carries the token its
writer holds (`fence`). Tokens come from one PostgreSQL sequence, so a token is never
handed out twice: letting go of a tree empties `replica_id` and keeps the token, and the
row of a finished tree may be pruned. Every time is the database's clock
(`clock_timestamp()`), so replicas whose clocks disagree agree on when a lease expired.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine
from taskgrove.domain.statuses import IN_PROGRESS, PENDING

WORK_CHANNEL = "taskgrove_work"
"""NOTIFY: trees were let go by a replica that stops (payload: its id); the others sweep."""
ADOPT_CHANNEL = "taskgrove_adopt"
"""NOTIFY: a tree was handed to a replica (payload: its id), which loads it."""

DB_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"
"""The database's clock in microseconds (SQL): every replica's expiry is judged by it."""

# Acquiring a tree this replica still holds keeps its token: changes queued under the
# hold (before a release that has not committed yet) must still commit.
_ACQUIRE = text(
    f"""
    INSERT INTO tree_leases (root_id, replica_id, token, expires_us)
    VALUES (:root_id, :replica_id, nextval('tree_lease_tokens'), {DB_NOW_US} + :ttl_us)
    ON CONFLICT (root_id) DO UPDATE
        SET replica_id = :replica_id,
            token = CASE WHEN tree_leases.replica_id = :replica_id THEN tree_leases.token
                         ELSE nextval('tree_lease_tokens') END,
            expires_us = {DB_NOW_US} + :ttl_us,
            adopt = false
        WHERE tree_leases.replica_id IN (:replica_id, '')
           OR tree_leases.expires_us < {DB_NOW_US}
    RETURNING token
    """
)
_HOLDER = text(
    "SELECT replica_id FROM tree_leases WHERE root_id = :root_id AND replica_id <> ''"
    f" AND expires_us >= {DB_NOW_US}"
)
_RENEW = text(
    f"""
    UPDATE tree_leases SET expires_us = {DB_NOW_US} + :ttl_us
    WHERE replica_id = :replica_id RETURNING root_id, token
    """
)
# Row locks until the writer's commit: a takeover (an UPDATE of the same rows) waits for
# it, then finds the lease renewed.
_FENCE = text(
    f"""
    UPDATE tree_leases SET expires_us = {DB_NOW_US} + :ttl_us
    WHERE replica_id = :replica_id AND root_id = ANY(:root_ids) RETURNING root_id, token
    """
)
# SKIP LOCKED: replicas sweeping at the same time claim different trees, and none waits
# for a lease row a live holder's writer has locked.
_CLAIM_EXPIRED = text(
    f"""
    UPDATE tree_leases SET replica_id = :replica_id, token = nextval('tree_lease_tokens'),
        expires_us = {DB_NOW_US} + :ttl_us, adopt = false
    WHERE root_id IN (
        SELECT root_id FROM tree_leases
        WHERE expires_us < {DB_NOW_US} AND replica_id NOT IN (:replica_id, '')
        ORDER BY expires_us LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING root_id, token
    """
)
_CLAIM_OWN = text(
    f"""
    UPDATE tree_leases SET token = nextval('tree_lease_tokens'),
        expires_us = {DB_NOW_US} + :ttl_us, adopt = false
    WHERE replica_id = :replica_id RETURNING root_id, token
    """
)
# A hand-over gave the tree a token of its own: the adopter keeps it.
_CLAIM_ADOPTED = text(
    f"""
    UPDATE tree_leases SET adopt = false, expires_us = {DB_NOW_US} + :ttl_us
    WHERE replica_id = :replica_id AND adopt RETURNING root_id, token
    """
)
# A batch adding tasks to a stored tree this replica does not hold locks its lease row
# (making one, held by nobody, if there is none): a replica acquiring the tree waits for
# the commit and then reads the new tasks. RETURNING gives the row as it stands.
_GUARD = text(
    f"""
    INSERT INTO tree_leases (root_id, replica_id, token, expires_us)
    SELECT root_id, '', nextval('tree_lease_tokens'), 0
    FROM unnest(CAST(:root_ids AS varchar[])) AS root_id
    ON CONFLICT (root_id) DO UPDATE SET root_id = EXCLUDED.root_id
    RETURNING root_id, replica_id, expires_us >= {DB_NOW_US}
    """
)
# Under the token held, so a stale holder hands over nothing; a token of its own, so
# nothing the old holder has left can commit. The lease's expiry stays: if the adopter
# is gone too, the tree is swept like any other.
_HAND_OVER = text(
    f"""
    UPDATE tree_leases SET replica_id = :to, token = nextval('tree_lease_tokens'), adopt = true
    WHERE root_id = :root_id AND token = :token
    RETURNING pg_notify('{ADOPT_CHANNEL}', :to)
    """
)
_UNLEASED_ACTIVE = text(
    """
    SELECT DISTINCT t.root_id FROM tasks t
    WHERE t.execution_requested AND t.status IN (:pending, :in_progress)
      AND NOT EXISTS (
          SELECT 1 FROM tree_leases l WHERE l.root_id = t.root_id AND l.replica_id <> ''
      )
    LIMIT :limit
    """
)


class TreeLeases:
    def __init__(self, db: AsyncEngine, replica_id: str, ttl_s: float) -> None:
        self._db = db
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        self._ttl_us = int(ttl_s * 1_000_000)

    def _params(self, **more: object) -> dict[str, object]:
        return {"replica_id": self.replica_id, "ttl_us": self._ttl_us, **more}

    async def _tokens(self, statement: TextClause, params: dict[str, object]) -> dict[str, int]:
        """Run a statement answering (root id, token) rows, in a transaction of its own."""
        async with self._db.begin() as conn:
            return {root_id: int(token) for root_id, token in await conn.execute(statement, params)}

    async def acquire(self, root_id: str) -> int | None:
        """Hold the tree: its new token, or None while another replica's lease is live."""
        async with self._db.begin() as conn:
            token = await conn.scalar(_ACQUIRE, self._params(root_id=root_id))
            return None if token is None else int(token)

    async def holder(self, root_id: str) -> str | None:
        """The replica whose lease on the tree is live, if any."""
        async with self._db.connect() as conn:
            holder = await conn.scalar(_HOLDER, {"root_id": root_id})
            return None if holder is None else str(holder)

    async def renew(self) -> dict[str, int]:
        """Extend every lease this replica holds; returns them (root id -> token)."""
        return await self._tokens(_RENEW, self._params())

    async def claim_expired(self, limit: int) -> dict[str, int]:
        """Take over up to `limit` trees whose holder's lease ran out."""
        return await self._tokens(_CLAIM_EXPIRED, self._params(limit=limit))

    async def claim_own(self) -> dict[str, int]:
        """At start: take back, under new tokens, what this replica's id held before."""
        return await self._tokens(_CLAIM_OWN, self._params())

    async def claim_adopted(self) -> dict[str, int]:
        """The trees another replica handed to this one (see `hand_over`), to load."""
        return await self._tokens(_CLAIM_ADOPTED, self._params())

    async def unleased_active(self, limit: int) -> list[str]:
        """Executing trees nobody holds (e.g. from before replicas had leases)."""
        async with self._db.connect() as conn:
            params = {"limit": limit, "pending": PENDING, "in_progress": IN_PROGRESS}
            return list((await conn.execute(_UNLEASED_ACTIVE, params)).scalars())

    async def announce_free(self) -> None:
        """Tell the other replicas (NOTIFY) that this one let go of its trees; those
        handed to it that it has not adopted yet expire, for them to take over too."""
        async with self._db.begin() as conn:
            await conn.execute(
                text("UPDATE tree_leases SET expires_us = 0 WHERE replica_id = :replica_id"),
                {"replica_id": self.replica_id},
            )
            await conn.execute(
                text("SELECT pg_notify(:channel, :replica_id)"),
                {"channel": WORK_CHANNEL, "replica_id": self.replica_id},
            )

    def fence(self, conn: Connection, held: dict[str, int]) -> set[str]:
        """Inside the writer's transaction: renew the leases of `held` (root id -> the
        token the writer holds) and return the roots whose lease another replica has
        taken meanwhile (their writes must not commit)."""
        rows = conn.execute(_FENCE, self._params(root_ids=list(held)))
        current = {root_id: token for root_id, token in rows}
        return {root_id for root_id, token in held.items() if current.get(root_id) != token}

    def guard(self, conn: Connection, roots: set[str]) -> set[str]:
        """Inside the writer's transaction: lock the lease rows of stored trees, not held
        here, that the batch adds tasks to; returns those another replica holds (it is
        the one to add them, or its memory would miss them)."""
        rows = conn.execute(_GUARD, {"root_ids": sorted(roots)})  # sorted: no deadlock
        return {
            root_id
            for root_id, replica_id, live in rows
            if live and replica_id not in ("", self.replica_id)
        }


def hand_over(conn: Connection, root_id: str, token: int, to: str) -> None:
    """Inside the writer's transaction: give the tree's lease to replica `to`, which is
    woken to adopt it (a release, after the tree's last writes)."""
    conn.execute(_HAND_OVER, {"root_id": root_id, "token": token, "to": to})


def writer_fence(
    leases: TreeLeases, tokens: Callable[[set[str]], dict[str, int]]
) -> Callable[[Connection, set[str], set[str]], set[str]]:
    """The writer's fence (`SqlWrites.fence`), given the roots a batch writes and those
    it adds tasks under: `tokens` says which token this replica holds for each root
    (those it holds are fenced by token, the others it adds to are guarded)."""

    def fence(conn: Connection, roots: set[str], added_to: set[str]) -> set[str]:
        held = tokens(roots)
        lost = leases.fence(conn, held) if held else set()
        if others := added_to - held.keys():
            lost |= leases.guard(conn, others)
        return lost

    return fence
