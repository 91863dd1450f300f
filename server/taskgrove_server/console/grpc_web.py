"""The gRPC-Web wire format (binary, `application/grpc-web+proto`): length-prefixed frames,
and the trailers frame that carries the call's status in the response body (a browser's
fetch cannot read HTTP trailers). Text mode (`application/grpc-web-text`, what Google's
grpc-web client sends by default) is the same frames in base64: the request body may be
several separately padded base64 chunks, and each response chunk is encoded on its own."""

from __future__ import annotations

import base64
import binascii
import re
import struct
import urllib.parse
from collections.abc import Iterable

BINARY_CONTENT_TYPES = ("application/grpc-web", "application/grpc-web+proto")
TEXT_CONTENT_TYPES = ("application/grpc-web-text", "application/grpc-web-text+proto")
CONTENT_TYPES = BINARY_CONTENT_TYPES + TEXT_CONTENT_TYPES
"""Request content types served (JSON is not)."""
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = re.compile(rb"\s+")
_DATA = 0x00
_TRAILERS = 0x80
_HEADER = struct.Struct(">BI")


class FrameError(ValueError):
    """A request body that is not exactly one gRPC-Web data frame."""


def data_frame(message: bytes) -> bytes:
    return _HEADER.pack(_DATA, len(message)) + message


def trailers_frame(code: int, message: str, details: bytes | None = None) -> bytes:
    """The status as gRPC-Web trailers: `grpc-message` percent-encoded, as gRPC does, and
    `grpc-status-details-bin` (a google.rpc.Status) base64 without padding."""
    lines = [f"grpc-status: {code}"]
    if message:
        lines.append(f"grpc-message: {urllib.parse.quote(message, safe=' ')}")
    if details:
        encoded = base64.b64encode(details).rstrip(b"=").decode("ascii")
        lines.append(f"grpc-status-details-bin: {encoded}")
    block = "".join(f"{line}\r\n" for line in lines).encode("ascii")
    return _HEADER.pack(_TRAILERS, len(block)) + block


def single_message(body: bytes) -> bytes:
    """The one message of a unary or server-streaming request body."""
    if len(body) < _HEADER.size:
        raise FrameError("the request body is not a gRPC-Web frame")
    flags, length = _HEADER.unpack_from(body)
    if flags & 0x01:
        raise FrameError("compressed gRPC-Web frames are not accepted")
    if flags != _DATA or len(body) != _HEADER.size + length:
        raise FrameError("the request body must be exactly one gRPC-Web data frame")
    return body[_HEADER.size :]


def decode_text(body: bytes) -> bytes:
    """A text-mode body's bytes: base64, possibly several chunks each padded (padding
    may then appear inside the body, which one b64decode refuses)."""
    body = _WHITESPACE.sub(b"", body)
    runs = [run for run in _BASE64_RUN.findall(body) if run]
    if sum(len(run) for run in runs) != len(body):  # something that is not base64
        raise FrameError("the request body is not base64 (grpc-web-text)")
    try:
        return b"".join(base64.b64decode(run, validate=True) for run in runs)
    except (binascii.Error, ValueError):
        raise FrameError("the request body is not base64 (grpc-web-text)") from None


def encode_text(data: bytes) -> bytes:
    """One response chunk in text mode: base64 with its padding, readable on its own."""
    return base64.b64encode(data)


def split_frames(body: bytes) -> Iterable[tuple[int, bytes]]:
    """(flags, payload) of each frame in a response body (for clients and tests)."""
    offset = 0
    while offset < len(body):
        flags, length = _HEADER.unpack_from(body, offset)
        offset += _HEADER.size
        yield flags, body[offset : offset + length]
        offset += length


def parse_trailers(block: bytes) -> dict[str, str]:
    """A trailers frame's payload as a dict (names lower case, grpc-message decoded)."""
    found: dict[str, str] = {}
    for line in block.decode("ascii").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    if "grpc-message" in found:
        found["grpc-message"] = urllib.parse.unquote(found["grpc-message"])
    return found
