"""taskgrove server: gRPC API, execution engine and storage (`pip install 'taskgrove[server]'`).

Rooms, each importing only those after it (ARCHITECTURE.md): `app`/`cli` (assembly) ->
`api` (gRPC, protobuf) -> `service` (use-cases) -> `engine` (scheduling, execution) ->
`storage` (SQL) | `executors` -> `events`; shared by all: `errors`, `ids`, `clock`.
"""

from __future__ import annotations

try:  # the server's own dependencies come with the `server` extra
    import aiosqlite  # noqa: F401
    import jsonschema  # noqa: F401
    import psutil  # noqa: F401
    import sqlalchemy  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised by the slim-install test
    raise ImportError(
        f"the taskgrove server needs its extra ({error.name} is missing): "
        "pip install 'taskgrove[server]'"
    ) from error

__all__ = ["__version__"]

__version__ = "0.1.0"
