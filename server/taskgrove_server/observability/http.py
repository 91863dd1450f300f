"""A minimal HTTP endpoint for Prometheus on the event loop: `GET /metrics`.

It runs on the server's own loop (no thread), so collecting reads the engine's state
where it is changed, never concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskgrove_server.config import split_host_port

log = logging.getLogger(__name__)

_MAX_HEAD = 16 * 1024
_READ_TIMEOUT_S = 10.0


def split_address(address: str) -> tuple[str, int]:
    """The metrics address as (host, port); raises ConfigError."""
    return split_host_port(address, "metrics address")


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        self._registry = registry
        self._host, self._port = split_address(address)
        self._server: asyncio.Server | None = None
        self.port = 0
        """The port it listens on, once started (the one picked for port 0)."""

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
        except OSError as error:
            raise OSError(
                f"cannot serve metrics on {self._host}:{self._port}: "
                f"{error.strerror or error}; give another --metrics HOST:PORT (or "
                "TASKGROVE_METRICS_ADDRESS)"
            ) from error
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, _, rest = head[:_MAX_HEAD].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"", "text/plain"
            elif path == "/metrics":
                status, body, kind = "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST
            else:
                status, body, kind = "404 Not Found", b"see /metrics\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
