"""The web console: its built assets and the gRPC-Web bridge that lets the browser speak
`taskgrove.v1` to this server (see ARCHITECTURE.md, "Web console")."""

from __future__ import annotations

from taskgrove_server.console.bridge import Upstream
from taskgrove_server.console.server import ConsoleServer, split_http_address

__all__ = ["ConsoleServer", "Upstream", "split_http_address"]
