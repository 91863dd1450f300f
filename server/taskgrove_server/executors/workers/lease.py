"""One assignment of one attempt to one worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from taskgrove_server.executors.base import ExecutionContext


@dataclass(eq=False, slots=True)
class Lease:
    id: str
    fencing_token: int
    """The attempt's number: it grows with every claim that counts, and is durable."""
    worker_id: str
    context: ExecutionContext
    outcome: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """Resolved by the worker's outcome (a result, or an ExecutorError), or by the lease's
    expiry (WORKER_LOST)."""
    accepted: bool = False
    given_up: str | None = None
    """Why the server gave up on the attempt (`CANCELLED`, `TIMEOUT`) while the worker
    may still run it: told again when the worker reconnects."""
