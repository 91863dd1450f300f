"""taskgrove server: gRPC API, execution engine and storage (`pip install 'taskgrove[server]'`).

Rooms, each importing only those after it (ARCHITECTURE.md): `app`/`cli` (assembly) ->
`api` (gRPC, protobuf) -> `service` (use-cases) -> `engine` (scheduling, execution) ->
`storage` (SQL) | `executors` -> `events`; shared by all: `errors`, `ids`, `clock`.
"""

from __future__ import annotations

from importlib.util import find_spec

# The server's own dependencies come with the `server` extra. Looked up, not imported:
# the client CLI loads this package for its `serve` command and must stay quick.
_missing = [
    name for name in ("aiosqlite", "jsonschema", "psutil", "sqlalchemy") if not find_spec(name)
]
if _missing:  # pragma: no cover - exercised by the slim-install test
    raise ImportError(
        f"the taskgrove server needs its extra ({', '.join(_missing)} missing): "
        "pip install 'taskgrove[server]'",
        name=_missing[0],
    )

__all__ = ["__version__"]

__version__ = "0.1.0"
