"""Server configuration, from flags or TASKGROVE_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ADDRESS = "127.0.0.1:50051"


def default_db_url() -> str:
    """An SQLite file under the user's data directory, created on first start."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite+aiosqlite:///{Path(base) / 'taskgrove' / 'taskgrove.db'}"


@dataclass(slots=True)
class ServerConfig:
    address: str = DEFAULT_ADDRESS
    """host:port to listen on; port 0 picks a free port."""
    db_url: str = field(default_factory=default_db_url)
    """SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."""
    max_concurrency: int = 256
    """Executor attempts running at once, across the whole server."""
    executor_limits: dict[str, int] = field(default_factory=dict)
    """Optional per-executor concurrency limits."""
    allowed_commands: list[str] = field(default_factory=list)
    """Programs `command_executor` may run; empty: the executor is disabled."""
    grace_seconds: float = 10.0
    """On shutdown, how long in-flight calls may take to finish."""
    max_tree_size: int = 200_000
    """Most tasks one CreateTaskTree may create."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message accepted or sent."""
    event_retention_seconds: float = 7 * 24 * 3600
    """How long the events of a finished tree stay replayable."""
    prune_interval_seconds: float = 3600
    """How often history older than the retention is pruned."""
    idempotency_retention_seconds: float = 24 * 3600
    """How long a request_id is remembered."""
    watcher_buffer_events: int = 50_000
    """Events buffered per watcher before it is cut off as too slow."""

    @classmethod
    def from_env(cls) -> ServerConfig:
        config = cls()
        config.address = os.environ.get("TASKGROVE_ADDRESS", config.address)
        config.db_url = os.environ.get("TASKGROVE_DB", config.db_url)
        if value := os.environ.get("TASKGROVE_MAX_CONCURRENCY"):
            config.max_concurrency = int(value)
        if value := os.environ.get("TASKGROVE_EVENT_RETENTION_SECONDS"):
            config.event_retention_seconds = float(value)
        if value := os.environ.get("TASKGROVE_ALLOW_COMMANDS"):
            config.allowed_commands = [p for p in value.split(",") if p]
        return config
