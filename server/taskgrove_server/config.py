"""Server configuration, from flags or TASKGROVE_* environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_origin, get_type_hints

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"
"""Where `taskgrove serve` serves the web console unless told otherwise."""


def default_db_url() -> str:
    """An SQLite file under the user's data directory, created on first start."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite+aiosqlite:///{Path(base) / 'taskgrove' / 'taskgrove.db'}"


class ConfigError(ValueError):
    """A setting the server refuses to start with (the message names it)."""


def split_host_port(address: str, setting: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT) -> (host, port) for a listening address; raises
    ConfigError naming `setting` (e.g. "--http")."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{setting} {address!r}: expected HOST:PORT (port 0-65535)")
    return host.strip("[]"), int(port)


@dataclass(slots=True)
class ServerConfig:
    """Every field can be set by TASKGROVE_<FIELD NAME IN CAPITALS> (lists comma-separated,
    `executor_limits` as `name=n,name=n`); flags of `taskgrove serve` win over both."""

    address: str = DEFAULT_ADDRESS
    """host:port to listen on; port 0 picks a free port."""
    db_url: str = field(default_factory=default_db_url)
    """SQLAlchemy async URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...
    (environment: TASKGROVE_DB)."""
    max_concurrency: int = 256
    """Executor attempts running at once, across the whole server."""
    executor_limits: dict[str, int] = field(default_factory=dict)
    """Optional per-executor concurrency limits."""
    allowed_commands: list[str] = field(default_factory=list)
    """Programs `command_executor` may run; empty: the executor is disabled
    (environment: TASKGROVE_ALLOW_COMMANDS)."""
    command_env: list[str] = field(default_factory=list)
    """Environment variable NAMES a command task may set in `env` (dangerous ones such as
    LD_PRELOAD are refused at start); nothing of the server's own environment passes."""
    command_cwd: list[str] = field(default_factory=list)
    """Directories a command task's `cwd` may resolve into; empty: every attempt runs in a
    fresh temporary directory."""
    command_user: str = ""
    """User commands run as; empty: `nobody` when the server runs as root, else the
    server's own user. Commands run as root only when this says `root`."""
    local_executors: bool = True
    """Run the built-in and entry-point executors in the server; off: every executor is
    served by workers (`serve --no-local-executors`)."""
    executors_file: str = ""
    """JSON file declaring executors served by workers, so that their tasks can be created
    before any worker connects: `[{"id": ..., "description": ..., "input_schema": {...}}]`."""
    worker_lease_seconds: float = 15.0
    """How long a worker may stay silent (disconnected, or stalled) before its attempts
    are taken back: run again while attempts remain, else failed WORKER_LOST."""
    tree_lease_seconds: float = 15.0
    """Replicas on PostgreSQL: how long a replica that stops renewing (killed, paused, cut
    off) keeps its trees before another replica takes them over."""
    replica_id: str = ""
    """Replicas on PostgreSQL: this replica's name in the tree leases; empty: HOST:PORT
    (a replica restarted on the same address takes its trees back at once)."""
    grace_seconds: float = 10.0
    """On shutdown, how long in-flight calls may take to finish."""
    max_tree_size: int = 200_000
    """Most tasks one CreateTaskTree may create."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message accepted or sent."""
    max_result_bytes: int = 1024 * 1024
    """Largest task result stored; a larger one is replaced by a marker with a preview."""
    max_watchers: int = 1000
    """Most WatchEvents streams served at once."""
    max_watchers_per_caller: int = 100
    """Most WatchEvents streams one authenticated caller may hold open at once."""
    min_heartbeat_seconds: float = 0.5
    """Shortest heartbeat interval a watcher may ask for (shorter ones are raised to it):
    each heartbeat costs the server a wake-up per stream."""
    event_retention_seconds: float = 7 * 24 * 3600
    """How long the events of a finished tree stay replayable."""
    prune_interval_seconds: float = 3600
    """How often history older than the retention is pruned."""
    idempotency_retention_seconds: float = 24 * 3600
    """How long a request_id is remembered."""
    watcher_buffer_events: int = 50_000
    """Events buffered per watcher before it is cut off as too slow."""
    tokens_file: str = ""
    """TOML file of bearer tokens (see SECURITY.md); with it or a JWT key, every call but
    health must authenticate (reloaded on SIGHUP)."""
    jwt_key_file: str = ""
    """PEM public key (or HMAC secret file) that signs accepted JWTs."""
    jwt_jwks_file: str = ""
    """JWKS file of the keys that sign accepted JWTs (chosen by `kid`)."""
    jwt_issuer: str = ""
    """Required `iss` of JWTs (empty: not checked)."""
    jwt_audience: str = ""
    """Required `aud` of JWTs (empty: not checked)."""
    jwt_algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    """Signature algorithms accepted for JWTs."""
    tls_cert_file: str = ""
    """PEM certificate chain the server presents; with `tls_key_file`, the port speaks TLS
    only (environment: TASKGROVE_TLS_CERT)."""
    tls_key_file: str = ""
    """PEM private key of `tls_cert_file` (environment: TASKGROVE_TLS_KEY)."""
    tls_client_ca_file: str = ""
    """PEM certificates of the authorities whose client certificates are accepted: with it,
    every connection must present one (mutual TLS), and a caller without a token is the
    user its certificate names (environment: TASKGROVE_TLS_CLIENT_CA)."""
    insecure: bool = False
    """Serve a non-loopback address without TLS or without authentication (refused
    otherwise); a warning is logged on every start."""
    reflection: bool = True
    """Serve gRPC reflection (the schema, without credentials)."""
    http_address: str = ""
    """host:port of the web console and its gRPC-Web bridge (environment: TASKGROVE_HTTP);
    empty or `off`: no console. `taskgrove serve` defaults to 127.0.0.1:8080."""
    http_optional: bool = False
    """An `http_address` that cannot be served is a warning and no console, not a refusal
    to start (what `taskgrove serve` sets for its default address)."""
    metrics_address: str = ""
    """host:port to serve Prometheus metrics on (`GET /metrics`); empty: off. See
    docs/operations.md."""
    log_format: str = "text"
    """The server's log lines: `text` or `json` (one object per line, with fields)."""
    otlp_endpoint: str = ""
    """OTLP/gRPC endpoint to export traces to (needs the `tracing` extra); empty: tracing
    is off unless `tracing` or the standard OTEL_EXPORTER_OTLP_* variables say otherwise."""
    tracing: bool = False
    """Export traces even without `otlp_endpoint` (to the OTEL_* default endpoint)."""
    gc_stats: bool = False
    """Count garbage collections and print their totals when the server stops (one
    `taskgrove gc stats:` line; the benchmark reads it)."""

    @property
    def auth_enabled(self) -> bool:
        """Whether callers must authenticate."""
        return bool(
            self.tokens_file or self.jwt_key_file or self.jwt_jwks_file or self.tls_client_ca_file
        )

    @property
    def console_enabled(self) -> bool:
        """Whether the web console is to be served."""
        return self.http_address.strip().lower() not in ("", "off")

    @property
    def tls_enabled(self) -> bool:
        """Whether the port speaks TLS (the certificate and key are checked at start)."""
        return bool(self.tls_cert_file or self.tls_key_file or self.tls_client_ca_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if environ is None else environ
        config = cls()
        for spec in fields(cls):
            name = env_name(spec.name)
            value = env.get(name)
            if not value:
                continue
            config.set_text(spec.name, value, f"{name}={value}")
        return config

    def set_text(self, name: str, text: str, source: str) -> None:
        """Set the field `name` from `text` (as the environment spells values), checked
        against its bounds; a bad value is a ConfigError that names `source` (the variable
        or flag it came from) and says what is expected."""
        kind = get_type_hints(type(self))[name]
        try:
            value = _PARSERS[get_origin(kind) or kind](text)
        except ValueError as error:
            wanted = expected(name)
            raise ConfigError(
                f"{source}: {error}" + (f"; give {wanted}" if wanted else "")
            ) from None
        if problem := field_problem(name, value):
            raise ConfigError(f"{source}: {problem}")
        setattr(self, name, value)

    def validate(self) -> None:
        """Raise ConfigError for a numeric setting out of its bounds (named as its
        environment variable)."""
        for spec in fields(self):
            if problem := field_problem(spec.name, getattr(self, spec.name)):
                raise ConfigError(f"{env_name(spec.name)}: {problem}")


def env_name(field_name: str) -> str:
    """The environment variable of a ServerConfig field."""
    return _ENV_NAMES.get(field_name, f"TASKGROVE_{field_name.upper()}")


_AT_LEAST_ONE = frozenset(
    {
        "max_concurrency",
        "max_tree_size",
        "max_message_bytes",
        "max_result_bytes",
        "max_watchers",
        "max_watchers_per_caller",
        "watcher_buffer_events",
    }
)
_POSITIVE_SECONDS = frozenset(
    {
        "worker_lease_seconds",
        "tree_lease_seconds",
        "min_heartbeat_seconds",
        "prune_interval_seconds",
    }
)
_SECONDS = frozenset({"grace_seconds", "event_retention_seconds", "idempotency_retention_seconds"})


def expected(name: str) -> str:
    """What a value of the field `name` must be, with its default (for error messages)."""
    default = _DEFAULTS.get(name)
    if name in _AT_LEAST_ONE:
        return f"a whole number >= 1 (default {default})"
    if name in _POSITIVE_SECONDS:
        return f"a number of seconds > 0 (default {default})"
    if name in _SECONDS:
        return f"a number of seconds >= 0 (default {default})"
    if name == "executor_limits":
        return "NAME=N[,NAME=N...] with N >= 1, e.g. sleep_executor=4"
    return ""


MAX_REPLICA_ID_LENGTH = 64
"""The width of `tree_leases.replica_id`."""


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the field `name` (None: nothing)."""
    if name == "replica_id" and (
        len(value) > MAX_REPLICA_ID_LENGTH or any(c.isspace() or c == "\x00" for c in value)
    ):
        return f"must be at most {MAX_REPLICA_ID_LENGTH} characters, without spaces"
    bad = (
        (name in _AT_LEAST_ONE and value < 1)
        or (name in _POSITIVE_SECONDS and not (value > 0 and math.isfinite(value)))
        or (name in _SECONDS and not (value >= 0 and math.isfinite(value)))
        or (name == "executor_limits" and any(not k or n < 1 for k, n in value.items()))
    )
    return f"must be {expected(name)}" if bad else None


_ENV_NAMES = {
    "db_url": "TASKGROVE_DB",
    "allowed_commands": "TASKGROVE_ALLOW_COMMANDS",
    "tls_cert_file": "TASKGROVE_TLS_CERT",
    "tls_key_file": "TASKGROVE_TLS_KEY",
    "tls_client_ca_file": "TASKGROVE_TLS_CLIENT_CA",
    "http_address": "TASKGROVE_HTTP",
}


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value.strip()!r} is not a whole number") from None


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{value.strip()!r} is not a number") from None


def parse_limits(value: str) -> dict[str, int]:
    """`name=n,name=n` (spaces allowed) as a dict."""
    limits = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, equals, limit = item.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{item.strip()!r} is not NAME=N")
        limits[name.strip()] = _whole(limit)
    return limits


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


_PARSERS: dict[type, Callable[[str], Any]] = {
    bool: _flag,
    str: str,
    int: _whole,
    float: _number,
    list: lambda value: [item for item in value.split(",") if item],
    dict: parse_limits,
}

_DEFAULTS: dict[str, Any] = {
    spec.name: spec.default for spec in fields(ServerConfig) if not callable(spec.default)
}
