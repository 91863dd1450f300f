"""Where a test server's web console is."""

from __future__ import annotations

from taskgrove_server.app import TaskgroveServer


def console_url(server: TaskgroveServer, fragment: str = "") -> str:
    """The web console of `server` (started with an `http_address`), at `fragment`."""
    assert server.console is not None
    return f"{server.console.url}{fragment}"
