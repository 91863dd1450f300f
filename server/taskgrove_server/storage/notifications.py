"""PostgreSQL LISTEN on one dedicated connection, kept up across drops.

    notifications = Notifications.for_url(db_url)   # None unless PostgreSQL
    if notifications is not None:
        await notifications.start()
        await notifications.listen("taskgrove_events", on_event, on_reconnect=reread)

Callbacks run on the event loop with the payload string, in the order PostgreSQL sends
them. A notification sent while the connection is down is lost (PostgreSQL queues them
only for a listening session), so each registration has an `on_reconnect` hook, called
once LISTEN is active again: re-read whatever the notifications stand for. From the
moment `listen()` returns (or a hook is called) every notification is delivered, so a
read made after that point misses nothing.

The connection is checked every `ping_s` seconds besides asyncpg's own end-of-connection
report, so a silent network failure is noticed too; reconnection backs off up to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from taskgrove_server.waits import wait_set

log = logging.getLogger(__name__)

APPLICATION_NAME = "taskgrove-listen"
"""How the connection shows in pg_stat_activity."""
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


def libpq_dsn(url: str) -> str:
    """A plain `postgresql://` DSN (for asyncpg) from the server's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(slots=True)
class _Registration:
    channel: str
    callback: Callable[[str], None]
    on_reconnect: Callable[[], None] | None


class Notifications:
    def __init__(self, dsn: str, *, ping_s: float = 5.0, connect_timeout_s: float = 10.0) -> None:
        self._dsn = dsn
        self._ping_s = ping_s
        self._connect_timeout_s = connect_timeout_s
        self._registrations: list[_Registration] = []
        self._connection: Any = None  # an asyncpg.Connection (asyncpg is imported lazily)
        self._listening: set[str] = set()
        self._dropped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0
        """How many times the connection was made again (for tests and logs)."""

    @classmethod
    def for_url(cls, url: str) -> Notifications | None:
        """Notifications on the database of `url`, or None when it is not PostgreSQL."""
        if make_url(url).get_backend_name() != "postgresql":
            return None
        return cls(libpq_dsn(url))

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def start(self) -> None:
        """Connect (raising when the database cannot be reached), then keep the
        connection up in the background."""
        await self._connect()
        self._task = asyncio.create_task(self._keep_up(), name="taskgrove-notifications")

    async def listen(
        self,
        channel: str,
        callback: Callable[[str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        """Call `callback(payload)` for each notification on `channel`. Returns once
        LISTEN is active (or at once while disconnected: `on_reconnect` is then called
        when it becomes active)."""
        registration = _Registration(channel, callback, on_reconnect)
        self._registrations.append(registration)
        if self._connection is not None and channel not in self._listening:
            try:
                await self._listen(self._connection, channel)
            except Exception as error:  # the connection dropped: the reconnect covers it
                log.warning("LISTEN %s failed: %s", channel, error)
                self._drop()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_connection()

    # ------------------------------------------------------------------ internals

    def _dispatch(self, channel: str, payload: str) -> None:
        for registration in list(self._registrations):
            if registration.channel == channel:
                try:
                    registration.callback(payload)
                except Exception:
                    log.exception("notification callback for %s failed", channel)

    def _received(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self._dispatch(channel, str(payload))

    async def _listen(self, connection: Any, channel: str) -> None:
        self._listening.add(channel)  # first: two listen() calls LISTEN once
        try:
            await connection.add_listener(channel, self._received)
        except BaseException:
            self._listening.discard(channel)
            raise

    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_s,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            self._listening = set()
            # Until none is missing: `listen()` may register a channel meanwhile.
            while missing := [c for c in self._channels() if c not in self._listening]:
                for channel in missing:
                    await self._listen(connection, channel)
        except BaseException:
            await connection.close()
            raise
        # Also called when we close it ourselves: only the current one counts.
        connection.add_termination_listener(
            lambda ended: self._drop() if ended is self._connection else None
        )
        self._dropped.clear()
        self._connection = connection

    def _channels(self) -> list[str]:
        return list(dict.fromkeys(r.channel for r in self._registrations))

    def _drop(self) -> None:
        self._dropped.set()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._listening = set()
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)

    async def _keep_up(self) -> None:
        while not self._closed:
            await self._wait_for_drop()
            log.warning("the notification connection dropped; reconnecting")
            await self._close_connection()
            delay = _RETRY_FIRST_S
            while not self._closed:
                try:
                    await self._connect()
                    break
                except Exception as error:
                    log.warning("reconnecting for notifications failed: %s", error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
            self.reconnects += 1
            for registration in list(self._registrations):
                if registration.on_reconnect is not None:
                    try:
                        registration.on_reconnect()
                    except Exception:
                        log.exception("on_reconnect hook for %s failed", registration.channel)

    async def _wait_for_drop(self) -> None:
        """Return when the connection ended or stopped answering."""
        while True:
            if await wait_set(self._dropped, self._ping_s):
                return
            connection = self._connection
            if connection is None:
                return
            try:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), self._ping_s)
            except Exception:
                return
