"""The console's HTTP listener: the built assets on GET, gRPC-Web POSTs bridged to the
server's own gRPC port (bridge.py). It runs on the server's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from taskgrove_server.config import split_host_port
from taskgrove_server.console import grpc_web
from taskgrove_server.console.assets import Asset, load_assets
from taskgrove_server.console.bridge import METHODS, Status, Upstream
from taskgrove_server.console.http11 import (
    MAX_HEAD_BYTES,
    BadRequest,
    Request,
    chunk,
    read_request,
    response_head,
    whole_response,
)

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_GRPC_WEB_HEADERS = {"Content-Type": "application/grpc-web+proto", "Cache-Control": "no-cache"}
_GRPC_WEB_TEXT_HEADERS = {**_GRPC_WEB_HEADERS, "Content-Type": "application/grpc-web-text+proto"}
_UNIMPLEMENTED = 12
_INVALID_ARGUMENT = 3
MAX_CONNECTIONS = 256
"""Open connections at once (each watch holds one; browsers open six per origin)."""
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def split_http_address(address: str) -> tuple[str, int]:
    """The console's address as (host, port); raises ConfigError naming --http."""
    return split_host_port(address, "--http")


class ConsoleServer:
    """Serves the console on `address` for the gRPC port `grpc_port`. `start()` raises
    OSError when the address cannot be bound."""

    def __init__(
        self, address: str, upstream: Upstream, *, max_message_bytes: int, loopback: bool = True
    ) -> None:
        self._host, self._port = split_http_address(address)
        self._loopback = loopback
        self._upstream = upstream
        self._max_body = max_message_bytes + 5
        self._assets: dict[str, Asset] = load_assets()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0
        """The port it listens on, once started (the one picked for port 0)."""

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._connection, self._host, self._port, limit=MAX_HEAD_BYTES
            )
        except OSError as error:
            raise OSError(
                f"cannot serve the web console on {self._host}:{self._port}: "
                f"{error.strerror or error}; give another --http HOST:PORT (or TASKGROVE_HTTP), "
                "or --http off"
            ) from error
        self.port = self._server.sockets[0].getsockname()[1]
        if not self._assets:
            log.warning("web console assets are missing (run `make web`); serving gRPC-Web only")

    async def close(self) -> None:
        """Stop listening and end every open connection (streams cancel their calls)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._upstream.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.write(whole_response(503, "text/plain", b"too many connections\n"))
            writer.close()
            return
        self._connections.add(task)
        try:
            while True:
                request = await read_request(reader, self._max_body)
                if request is None or not await self._answer(request, reader, writer):
                    break
                if not request.keep_alive:
                    break
        except BadRequest as error:
            with contextlib.suppress(OSError):
                writer.write(whole_response(error.status, "text/plain", f"{error}\n".encode()))
                await writer.drain()
        except OSError:
            pass  # the browser went away
        except Exception:
            # One connection's failure must not reach the loop's handler unexplained.
            log.exception("web console: a connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must close after it."""
        if problem := self._misdirected(request):
            raise BadRequest(421 if problem.startswith("Host") else 403, problem)
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind.startswith("application/grpc-web"):
            return await self._grpc_web(request, kind, reader, writer)
        if request.method not in ("GET", "HEAD"):
            writer.write(whole_response(405, "text/plain", b"GET the console, or POST gRPC-Web\n"))
        elif (asset := self._assets.get(request.path)) is not None:
            head = response_head(
                200,
                {
                    "Content-Type": asset.kind,
                    "Content-Length": str(len(asset.body)),
                    "Cache-Control": "no-cache",
                    **_SECURITY_HEADERS,
                },
            )
            writer.write(head if request.method == "HEAD" else head + asset.body)
        else:
            writer.write(whole_response(404, "text/plain", b"not found; the console is at /\n"))
        await writer.drain()
        return True

    def _misdirected(self, request: Request) -> str:
        """Why a request must not be served: on loopback, a Host that is not a loopback
        name (DNS rebinding: a page of another site made to resolve here); a call from a
        page of another origin (its Origin is not this Host)."""
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self._loopback and name not in _LOOPBACK_NAMES:
            return f"Host {host!r} is not this console's; open it as http://127.0.0.1:{self.port}/"
        origin = request.headers.get("origin")
        if origin is not None and request.method == "POST" and origin != f"http://{host}":
            return f"calls from {origin} are not accepted"
        return ""

    async def _grpc_web(
        self,
        request: Request,
        kind: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if request.method != "POST":
            writer.write(whole_response(405, "text/plain", b"gRPC-Web calls are POSTs\n"))
            await writer.drain()
            return True
        if kind not in grpc_web.CONTENT_TYPES:
            text = f"{kind} is not served; use application/grpc-web+proto\n".encode()
            writer.write(whole_response(415, "text/plain", text))
            await writer.drain()
            return True
        text_mode = kind in grpc_web.TEXT_CONTENT_TYPES
        streaming = METHODS.get(request.path)
        if streaming is None:
            status = Status(_UNIMPLEMENTED, f"{request.path} is not served over gRPC-Web")
            return await self._reply(writer, None, status, text_mode)
        try:
            body = grpc_web.decode_text(request.body) if text_mode else request.body
            message = grpc_web.single_message(body)
        except grpc_web.FrameError as error:
            status = Status(_INVALID_ARGUMENT, str(error))
            return await self._reply(writer, None, status, text_mode)
        if not streaming:
            reply, status = await self._upstream.unary(request.path, message, request.headers)
            return await self._reply(writer, reply, status, text_mode)
        await self._stream(request, message, reader, writer, text_mode)
        return False

    async def _reply(
        self, writer: asyncio.StreamWriter, reply: bytes | None, status: Status, text_mode: bool
    ) -> bool:
        body = grpc_web.data_frame(reply) if reply is not None else b""
        body += grpc_web.trailers_frame(status.code, status.message, status.details)
        if text_mode:
            body = grpc_web.encode_text(body)
        kind = _GRPC_WEB_TEXT_HEADERS if text_mode else _GRPC_WEB_HEADERS
        writer.write(response_head(200, {**kind, "Content-Length": str(len(body))}) + body)
        await writer.drain()
        return True

    async def _stream(
        self,
        request: Request,
        message: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        text_mode: bool,
    ) -> None:
        """Relay a server stream chunk by chunk until it ends or the browser goes away
        (seen as the connection's end of file), which cancels the upstream call. In text
        mode each chunk is one frame in base64, padded, so a reader decodes it alone."""
        kind = _GRPC_WEB_TEXT_HEADERS if text_mode else _GRPC_WEB_HEADERS
        encode = grpc_web.encode_text if text_mode else bytes
        headers = {**kind, "Transfer-Encoding": "chunked", "Connection": "close"}
        writer.write(response_head(200, headers))
        messages = self._upstream.stream(request.path, message, request.headers)
        gone = asyncio.ensure_future(reader.read(1))
        following: asyncio.Future[bytes | Status] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(messages))
                await asyncio.wait({following, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    return
                item = following.result()
                if isinstance(item, Status):
                    frame = grpc_web.trailers_frame(item.code, item.message, item.details)
                    writer.write(chunk(encode(frame)) + chunk(b""))
                    await writer.drain()
                    return
                writer.write(chunk(encode(grpc_web.data_frame(item))))
                await writer.drain()
        finally:
            gone.cancel()
            if following is not None and not following.done():
                # The generator must be left before it can be closed (which cancels the call).
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
            await messages.aclose()
