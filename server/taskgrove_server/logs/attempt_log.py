"""One attempt's log: numbered lines, cut to a cap, written in small batches.

An attempt keeps its last MAX_LINES lines and MAX_BYTES: the end of a log (where the error
is) matters most. Lines are buffered for FLUSH_INTERVAL_S and written as one write; the
followers hear of them once they are committed, so a follower never sees a line that a
crash could lose.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from taskgrove_server.clock import now_us
from taskgrove_server.logs.followers import LogFollowers
from taskgrove_server.storage.records import LogLineRow
from taskgrove_server.storage.writer import Writer
from taskgrove_server.storage.writes import AppendTaskLog

MAX_LINES = 1000
MAX_BYTES = 1024 * 1024
MAX_LINE_CHARS = 8192
FLUSH_INTERVAL_S = 0.05
"""How long lines wait to be written together: a chatty executor costs at most 20
writes a second, and a follower sees a line within about this."""


def clean_line(text: str) -> str:
    """A line as stored: no line break, no NUL (PostgreSQL refuses it), not too long."""
    line = text.rstrip("\r\n").replace("\x00", "")
    if len(line) > MAX_LINE_CHARS:
        line = line[: MAX_LINE_CHARS - 1] + "…"
    return line


class AttemptLog:
    def __init__(
        self,
        task_id: str,
        attempt: int,
        writer: Writer,
        followers: LogFollowers,
        on_closed: Callable[[AttemptLog], None],
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self._writer = writer
        self._followers = followers
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._kept: deque[tuple[int, int]] = deque()
        """(sequence, bytes) of the lines the cap keeps."""
        self._kept_bytes = 0
        self._pending: list[LogLineRow] = []
        self._next = 1
        self._keep_from = 1
        self._written_keep_from = 1
        self._flush_handle: asyncio.TimerHandle | None = None
        self._fresh = True
        """No line of this run written yet: the first write replaces an earlier run's."""
        self.closed = False

    def write(self, text: str) -> None:
        """Log one line (several, if it holds line breaks). Safe from any thread."""
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.write, text)
            return
        if self.closed:
            return
        for part in str(text).splitlines() or [""]:
            self._append(clean_line(part))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL_S, self._flush)

    def _append(self, line: str) -> None:
        sequence = self._next
        self._next += 1
        size = len(line.encode())
        self._kept.append((sequence, size))
        self._kept_bytes += size
        while len(self._kept) > MAX_LINES or self._kept_bytes > MAX_BYTES:
            dropped, dropped_size = self._kept.popleft()
            self._kept_bytes -= dropped_size
            self._keep_from = dropped + 1
        self._pending.append(LogLineRow(sequence, now_us(), line))
        if len(self._pending) > 2 * MAX_LINES:  # a flood between two flushes: keep the end
            self._pending = [row for row in self._pending if row.sequence >= self._keep_from]

    def close(self) -> None:
        """The attempt ended: write what is left, then tell the followers."""
        if self.closed:
            return
        self.closed = True
        if self._next == 1 and not self._followers.watching(self.task_id):
            self._closed()  # nothing logged, nobody to tell: no need to wait for a commit
            return
        self._flush()
        self._writer.after_commit(self._closed)

    def _closed(self) -> None:
        self._followers.ended(self.task_id, self.attempt)
        self._on_closed(self)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        lines = [line for line in self._pending if line.sequence >= self._keep_from]
        self._pending = []
        cut = self._keep_from if self._keep_from != self._written_keep_from else None
        if not lines and cut is None:
            return
        self._written_keep_from = self._keep_from
        fresh, self._fresh = self._fresh, False
        self._writer.queue(AppendTaskLog(self.task_id, self.attempt, lines, cut, fresh))
        if lines:
            self._writer.after_commit(
                lambda: self._followers.publish(self.task_id, self.attempt, lines)
            )
