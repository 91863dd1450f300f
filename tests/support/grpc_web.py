"""A small gRPC-Web client for the console bridge tests: one HTTP/1.1 POST on a fresh
connection, its frames read as they arrive (a chunked body is decoded incrementally).
With `text_chunks`, it speaks text mode (`application/grpc-web-text`): the request
frame in that many separately padded base64 pieces, each response chunk decoded alone."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from google.protobuf.message import Message
from taskgrove_server.console import grpc_web

READ_S = 10.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> int:
        return int(self.trailers["grpc-status"])


class Call:
    """One gRPC-Web call on its own connection; `frames()` yields (flags, payload)."""

    def __init__(
        self,
        port: int,
        path: str,
        request: bytes | Message,
        *,
        text_chunks: int = 0,
        **headers: str,
    ) -> None:
        self.port = port
        self.path = path
        self.body = (
            request
            if isinstance(request, bytes)
            else grpc_web.data_frame(request.SerializeToString())
        )
        kind = "application/grpc-web+proto"
        if text_chunks:
            kind = "application/grpc-web-text"
            if not isinstance(request, bytes):
                self.body = text_body(self.body, text_chunks)
        self.text = bool(text_chunks)
        self.headers = {"content-type": kind, "x-grpc-web": "1", **headers}
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        headers = {"host": "127.0.0.1", **self.headers}
        lines = [f"POST {self.path} HTTP/1.1", f"content-length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + self.body)
        await self._writer.drain()
        head = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), READ_S)
        first, *rest = head.decode("latin-1").split("\r\n")
        self.status = int(first.split(" ")[1])
        for line in rest:
            name, sep, value = line.partition(":")
            if sep:
                self.response_headers[name.strip().lower()] = value.strip()

    async def _body(self) -> AsyncIterator[bytes]:
        assert self._reader is not None
        if self.response_headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(await asyncio.wait_for(self._reader.readline(), READ_S), 16)
                data = await asyncio.wait_for(self._reader.readexactly(size + 2), READ_S)
                if size == 0:
                    return
                yield self._decoded(data[:-2])
        else:
            length = int(self.response_headers.get("content-length", "0"))
            yield self._decoded(await asyncio.wait_for(self._reader.readexactly(length), READ_S))

    def _decoded(self, data: bytes) -> bytes:
        if not self.text:
            return data
        # Each chunk must be valid base64 on its own (padded): a strict b64decode.
        return base64.b64decode(data, validate=True)

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        pending = b""
        async for data in self._body():
            pending += data
            while len(pending) >= 5:
                length = int.from_bytes(pending[1:5], "big")
                if len(pending) < 5 + length:
                    break
                yield pending[0], pending[5 : 5 + length]
                pending = pending[5 + length :]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


def text_body(body: bytes, pieces: int) -> bytes:
    """`body` in base64 as `pieces` separately padded runs (lengths not multiples of 3,
    so padding falls inside the body), as a client encoding chunk by chunk sends it."""
    step = max(1, len(body) // pieces)
    cuts = [index * step + 1 for index in range(pieces)][1:] if pieces > 1 else []
    parts = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return b"".join(base64.b64encode(part) for part in parts if part)


async def call(
    port: int, path: str, request: bytes | Message, *, text_chunks: int = 0, **headers: str
) -> Reply:
    """The whole reply of a call (unary, or a stream that ends)."""
    one = Call(port, path, request, text_chunks=text_chunks, **headers)
    await one.open()
    reply = Reply(one.status, one.response_headers)
    try:
        if not one.response_headers.get("content-type", "").startswith("application/grpc-web"):
            return reply
        async for flags, payload in one.frames():
            if flags & 0x80:
                reply.trailers = grpc_web.parse_trailers(payload)
            else:
                reply.messages.append(payload)
    finally:
        await one.close()
    return reply


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), READ_S)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *rest = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in rest:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(first.split(" ")[1]), headers, body
