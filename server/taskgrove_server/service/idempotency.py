"""Idempotent mutating requests: a repeated `request_id` gets the first answer again.

The answer is stored right after the change commits; a request that fails is not stored,
so repeating it runs it again. Concurrent repeats in this process wait for the first;
replicas on PostgreSQL also wait for each other (storage/request_locks.py).
The API layer says how answers are encoded (here they are bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from taskgrove.domain import reasons

from taskgrove_server.clock import now_us
from taskgrove_server.errors import invalid_field
from taskgrove_server.service import limits
from taskgrove_server.storage.reads import TaskReads
from taskgrove_server.storage.request_locks import RequestLocks
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import StoreResponse

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RequestKey:
    request_id: str
    method: str
    request_hash: str
    """Fingerprint of the request without its request_id."""
    user: str = ""
    """The authenticated caller (empty: authentication is off): request ids are per user,
    so that one user can neither replay nor block another's."""

    @property
    def stored_id(self) -> str:
        """The key stored: the request id itself, or for a user a digest of both (which
        fits the column whatever the lengths; unauthenticated ids never start with `~`
        and 64 hexadecimal digits by accident)."""
        if not self.user:
            return self.request_id
        digest = hashlib.sha256(f"{len(self.user)}:{self.user}:{self.request_id}".encode())
        return "~" + digest.hexdigest()


class Idempotency:
    def __init__(
        self, reads: TaskReads, writer: Writer, replicas: RequestLocks | None = None
    ) -> None:
        self._reads = reads
        self._writer = writer
        self._replicas = replicas
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(
        self,
        key: RequestKey | None,
        compute: Callable[[], Awaitable[T]],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> T:
        if key is None:
            return await compute()
        if len(key.request_id) > limits.MAX_REQUEST_ID_LENGTH or "\x00" in key.request_id:
            raise invalid_field(
                "request_id",
                reasons.INVALID_REQUEST_ID,
                f"at most {limits.MAX_REQUEST_ID_LENGTH} characters, no NUL",
            )
        request_id = key.stored_id
        lock, users = self._locks.get(request_id, (asyncio.Lock(), 0))
        self._locks[request_id] = (lock, users + 1)
        try:
            async with lock, self._across_replicas(request_id):
                stored = await self._reads.stored_response(request_id)
                if stored is not None:
                    if stored.method != key.method or stored.request_hash != key.request_hash:
                        raise invalid_field(
                            "request_id",
                            reasons.REQUEST_ID_REUSED,
                            "this request_id was used for a different request",
                        )
                    return decode(stored.response)
                response = await compute()
                self._writer.queue(
                    StoreResponse(
                        request_id, key.method, key.request_hash, encode(response), now_us()
                    )
                )
                await self._writer.flush()
                return response
        finally:
            lock, users = self._locks[request_id]
            if users == 1:
                del self._locks[request_id]
            else:
                self._locks[request_id] = (lock, users - 1)

    def _across_replicas(self, request_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self._replicas is None:
            return contextlib.nullcontext()
        return self._replicas.held(request_id)
