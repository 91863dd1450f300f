"""A bare grpc.aio server on 127.0.0.1: one unary method that answers its request's bytes,
no interceptors, nothing stored. The transport floor's server (scenarios/floor.py): what
a round trip costs on this machine before taskgrove does anything. Prints its port, then
serves until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc

SERVICE, METHOD = "bench.Echo", "Echo"
PATH = f"/{SERVICE}/{METHOD}"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def main() -> None:
    server = grpc.aio.server()
    handlers = {METHOD: grpc.unary_unary_rpc_method_handler(_echo)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(None)


if __name__ == "__main__":
    asyncio.run(main())
