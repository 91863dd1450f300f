"""How the benchmark reaches a server: one `ClientConfig`, and channels made by the SDK's
one channel factory (`taskgrove._channel.new_channel`), in the harness and in the watcher
processes alike."""

from __future__ import annotations

import grpc
from taskgrove import ClientConfig
from taskgrove._channel import new_channel

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Room for a 100,000-task CreateTaskTree request and its snapshot chunks."""


def client_config(address: str, *, timeout: float | None = None) -> ClientConfig:
    """A plaintext connection to the bench's server on 127.0.0.1; `timeout` bounds the
    SDK's unary calls (the harness bounds everything with `asyncio.timeout` too)."""
    return ClientConfig(address=address, timeout=timeout, max_message_bytes=MAX_MESSAGE_BYTES)


def open_channel(address: str) -> grpc.aio.Channel:
    return new_channel(client_config(address))
