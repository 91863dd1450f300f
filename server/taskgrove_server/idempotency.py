"""Idempotent mutating RPCs: a repeated `request_id` gets the first answer again.

The answer is stored right after the change commits; a request that fails is not stored,
so repeating it runs it again. Concurrent repeats in this process wait for the first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgrove_server.clock import now_us
from taskgrove_server.errors import FieldViolation, invalid
from taskgrove_server.storage.schema import idempotency_keys
from taskgrove_server.storage.writer import Statement, Writer

M = TypeVar("M", bound=Message)

MAX_REQUEST_ID_LENGTH = 255


def _fingerprint(method: str, request: Message) -> str:
    clone = type(request)()
    clone.CopyFrom(request)
    clone.ClearField("request_id")
    digest = hashlib.sha256(method.encode())
    digest.update(clone.SerializeToString(deterministic=True))
    return digest.hexdigest()


class Idempotency:
    def __init__(self, engine: AsyncEngine, writer: Writer) -> None:
        self._engine = engine
        self._writer = writer
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        compute: Callable[[], Awaitable[M]],
    ) -> M:
        request_id: str = getattr(request, "request_id", "")
        if not request_id:
            return await compute()
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise invalid(
                [FieldViolation("request_id", "longer than 255 characters", "INVALID_REQUEST_ID")]
            )
        fingerprint = _fingerprint(method, request)
        lock, users = self._locks.get(request_id, (asyncio.Lock(), 0))
        self._locks[request_id] = (lock, users + 1)
        try:
            async with lock:
                async with self._engine.connect() as conn:
                    stored = (
                        (
                            await conn.execute(
                                select(idempotency_keys).where(
                                    idempotency_keys.c.request_id == request_id
                                )
                            )
                        )
                        .mappings()
                        .first()
                    )
                if stored is not None:
                    if stored["method"] != method or stored["request_hash"] != fingerprint:
                        raise invalid(
                            [
                                FieldViolation(
                                    "request_id",
                                    "this request_id was used for a different request",
                                    "REQUEST_ID_REUSED",
                                )
                            ]
                        )
                    return response_type.FromString(stored["response"])
                response = await compute()
                self._writer.execute(_store(request_id, method, fingerprint, response))
                await self._writer.flush()
                return response
        finally:
            lock, users = self._locks[request_id]
            if users == 1:
                del self._locks[request_id]
            else:
                self._locks[request_id] = (lock, users - 1)


def _store(request_id: str, method: str, fingerprint: str, response: Message) -> Statement:
    row = {
        "request_id": request_id,
        "method": method,
        "request_hash": fingerprint,
        "response": response.SerializeToString(),
        "created_us": now_us(),
    }

    def run(conn: Connection) -> None:
        conn.execute(insert(idempotency_keys), [row])

    return run


def prune_keys(cutoff_us: int) -> Statement:
    def run(conn: Connection) -> None:
        conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_us < cutoff_us))

    return run
