"""Operations on a tree another replica holds are run by that replica.

The engine tries an operation here first; when the tree is held elsewhere
(`HeldElsewhere`), the router sends it to the holder as a command (storage/commands.py)
and waits for the answer: the holder runs it on the tree in its memory (a cancel reaches
the executor that runs there) and answers with the result or the error, which the caller
gets as if it had run here. The router also serves the commands sent to this replica.

A holder that stops answering is waited for only while its lease lives: once it has
expired, the command is withdrawn (when the holder never took it) and the operation is
tried here again, where it can now take the tree over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from taskgrove.domain import reasons

from taskgrove_server.engine.ownership import HeldElsewhere, Ownership
from taskgrove_server.errors import Code, FieldViolation, ServiceError
from taskgrove_server.storage.commands import ClusterCommands, Command
from taskgrove_server.storage.leases import TreeLeases
from taskgrove_server.waits import wait_set

log = logging.getLogger(__name__)

Handler = Callable[[str, str, dict[str, Any]], Awaitable[Any]]
"""Runs one command here: (kind, root id, payload) -> the answer's value (JSON)."""

_POLL_S = 0.5
"""How often both sides look for what a lost notification did not bring."""
_GIVE_UP_S = 60.0
"""Longest wait for a holder that keeps its lease but does not answer."""
_TRIES = 3
"""Times an operation goes back and forth while its tree moves between replicas."""


class Moved(Exception):
    """The holder no longer holds the tree: try the operation here again."""


class Router:
    def __init__(self, commands: ClusterCommands, leases: TreeLeases, ownership: Ownership) -> None:
        self._commands = commands
        self._leases = leases
        self._ownership = ownership
        self.handler: Handler | None = None
        self._answers: dict[int, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- sending

    async def run(
        self,
        root_id: str,
        kind: str,
        payload: Callable[[], dict[str, Any]],
        local: Callable[[], Awaitable[Any]],
    ) -> Any:
        """`local()` here, or, while the tree is held elsewhere, as a command there;
        returns what `local()` returns here, or the holder's answer (its `value`)."""
        for _ in range(_TRIES):
            try:
                return await local()
            except HeldElsewhere as held:
                if not held.replica_id:
                    continue  # let go of meanwhile: try again here
                try:
                    return await self._call(held.replica_id, root_id, kind, payload())
                except Moved:
                    continue
            except ServiceError as error:
                # The tree was taken over while this ran here (this replica had stalled
                # past its lease): the fence dropped what it queued since, so it runs
                # again at the new holder (each operation is one write, or repeatable).
                if error.reason != reasons.REPLICA_UNAVAILABLE:
                    raise
        raise HeldElsewhere(root_id, None)

    async def _call(self, replica_id: str, root_id: str, kind: str, payload: dict[str, Any]) -> Any:
        command_id = await self._commands.send(
            replica_id, self._ownership.replica_id, root_id, kind, payload
        )
        answered = self._answers[command_id] = asyncio.Event()
        started = time.monotonic()
        try:
            while True:
                await wait_set(answered, _POLL_S)
                answer = await self._commands.answer_of(command_id)
                if answer is not None:
                    return _decode(answer)
                moved = await self._leases.holder(root_id) != replica_id
                if moved and await self._commands.withdraw(command_id):
                    raise Moved  # never taken: the tree is free or moved on
                if time.monotonic() - started > _GIVE_UP_S:
                    raise HeldElsewhere(root_id, replica_id)
        finally:
            self._answers.pop(command_id, None)

    def answered(self, payload: str) -> None:
        """NOTIFY on the answers channel."""
        with contextlib.suppress(ValueError):
            event = self._answers.get(int(payload))
            if event is not None:
                event.set()

    # ----------------------------------------------------------------- serving

    def addressed(self, payload: str) -> None:
        """NOTIFY on the commands channel: serve at once if it is for this replica."""
        if payload == self._ownership.replica_id:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="taskgrove-commands")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _serve(self) -> None:
        while True:
            await wait_set(self._wake, _POLL_S)
            self._wake.clear()
            try:
                commands = await self._commands.take(self._ownership.replica_id)
            except Exception as error:  # storage down: the writer reports it
                log.warning("reading commands from other replicas failed: %s", error)
                continue
            for command in commands:
                task = asyncio.create_task(self._answer(command), name=f"command-{command.id}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _answer(self, command: Command) -> None:
        assert self.handler is not None
        try:
            value = await self.handler(command.kind, command.root_id, command.payload)
            answer = {"value": value}
        except HeldElsewhere:
            answer = {"moved": True}
        except ServiceError as error:
            answer = {"error": _encode_error(error)}
        except Exception as error:
            log.exception("command %s from %s failed", command.kind, command.sender_id)
            answer = {"error": _encode_error(_internal(error))}
        try:
            await self._commands.answer(command.id, answer)
        except Exception as error:  # the sender gives up after the lease
            log.warning("answering command %s failed: %s", command.id, error)


def _internal(error: Exception) -> ServiceError:
    return ServiceError(Code.INTERNAL, reasons.INTERNAL, f"{type(error).__name__}: {error}")


def _encode_error(error: ServiceError) -> dict[str, Any]:
    return {
        "code": error.code.name,
        "reason": error.reason,
        "message": error.message,
        "metadata": error.metadata,
        "violations": [[v.field, v.description, v.reason] for v in error.violations],
        "violations_total": error.violations_total,
    }


def _decode(answer: dict[str, Any]) -> Any:
    if answer.get("moved"):
        raise Moved
    if "error" in answer:
        raw = answer["error"]
        raise ServiceError(
            Code[raw["code"]],
            raw["reason"],
            raw["message"],
            violations=[FieldViolation(*v) for v in raw["violations"]],
            metadata=dict(raw["metadata"]),
            violations_total=int(raw["violations_total"]),
        )
    return answer["value"]
