"""Just enough HTTP/1.1 for the console on the event loop: read one request (head and a
Content-Length body, both bounded), write a response whole or in chunks. Connections are
kept alive between requests, as browsers expect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 16 * 1024
IDLE_TIMEOUT_S = 60.0
"""An idle kept-alive connection is closed after this long."""
READ_TIMEOUT_S = 10.0

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    403: "Forbidden",
    503: "Service Unavailable",
}


class BadRequest(Exception):
    """A request that cannot be answered but with `status` and closing the connection."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    """Names in lower case; a repeated header keeps its last value."""
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request | None:
    """The next request, or None when the client closed (or idled out) between requests."""
    try:
        async with asyncio.timeout(IDLE_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request head too large") from None
    if len(head) > MAX_HEAD_BYTES:
        raise BadRequest(400, "request head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "not an HTTP/1.1 request")
    request = Request(parts[0], parts[1].split("?", 1)[0])
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            request.headers[name.strip().lower()] = value.strip()
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "chunked request bodies are not accepted; send Content-Length")
    length_text = request.headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequest(400, "bad Content-Length")
    length = int(length_text)
    if length > max_body:
        raise BadRequest(413, f"request body larger than {max_body} bytes")
    if length:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request.body = await reader.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError) as error:
            raise BadRequest(400, "request body incomplete") from error
    return request


def response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def whole_response(status: int, kind: str, body: bytes, *, head_only: bool = False) -> bytes:
    head = response_head(
        status,
        {"Content-Type": kind, "Content-Length": str(len(body)), "Cache-Control": "no-cache"},
    )
    return head if head_only else head + body


def chunk(data: bytes) -> bytes:
    """One chunk of a `Transfer-Encoding: chunked` body (b"" ends the body)."""
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"
