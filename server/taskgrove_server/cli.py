"""`taskgrove serve`: the server's sub-command of the `taskgrove` command line.

The SDK's CLI finds this through the entry point group `taskgrove.cli` (it never imports
the server itself), so the command exists only where the server is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from taskgrove_server.config import DEFAULT_HTTP_ADDRESS, ConfigError, ServerConfig


def add_serve_command(commands: Any) -> None:
    """Add `serve` to the `taskgrove` command line's sub-commands."""
    serve = commands.add_parser(
        "serve",
        help="run the server (embedded SQLite by default)",
        description="Run the taskgrove server until SIGINT or SIGTERM: it binds --address, "
        "opens and migrates the database, resumes executing trees, then serves. A setting it "
        "cannot start with is one `error:` line on stderr, exit 2.",
        epilog=_environment_help(),
    )
    serve.add_argument(
        "--address",
        default=argparse.SUPPRESS,
        help="host:port (env TASKGROVE_ADDRESS; 127.0.0.1:50051)",
    )
    serve.add_argument(
        "--db",
        metavar="URL",
        help="database URL: sqlite+aiosqlite:////abs/path.db or "
        "postgresql+asyncpg://user:password@host/db (env TASKGROVE_DB; default an SQLite "
        "file under ~/.local/share/taskgrove/)",
    )
    serve.add_argument(
        "--max-concurrency",
        metavar="N",
        help="executor attempts running at once (env TASKGROVE_MAX_CONCURRENCY; default 256)",
    )
    serve.add_argument(
        "--executor-limit",
        action="append",
        default=[],
        metavar="NAME=N",
        help="at most N attempts of executor NAME at once (repeatable; env "
        "TASKGROVE_EXECUTOR_LIMITS=NAME=N,NAME=N)",
    )
    serve.add_argument(
        "--allow-command",
        action="append",
        default=[],
        metavar="PROGRAM",
        help="let command_executor run PROGRAM (repeatable; env TASKGROVE_ALLOW_COMMANDS "
        "comma-separated); without any, command_executor is disabled",
    )
    serve.add_argument(
        "--tokens-file",
        help="TOML file of bearer tokens; with it every call but health must authenticate "
        "(env TASKGROVE_TOKENS_FILE; reloaded on SIGHUP; see SECURITY.md)",
    )
    serve.add_argument(
        "--jwt-key-file",
        help="PEM public key that signs accepted JWTs (env TASKGROVE_JWT_KEY_FILE)",
    )
    serve.add_argument(
        "--jwt-jwks-file",
        help="JWKS file of keys that sign accepted JWTs (env TASKGROVE_JWT_JWKS_FILE)",
    )
    serve.add_argument("--jwt-issuer", help="required `iss` of JWTs (env TASKGROVE_JWT_ISSUER)")
    serve.add_argument("--jwt-audience", help="required `aud` of JWTs (env TASKGROVE_JWT_AUDIENCE)")
    serve.add_argument(
        "--tls-cert",
        dest="tls_cert_file",
        metavar="PEM",
        help="serve TLS with this certificate chain (env TASKGROVE_TLS_CERT; with --tls-key)",
    )
    serve.add_argument(
        "--tls-key",
        dest="tls_key_file",
        metavar="PEM",
        help="private key of --tls-cert (env TASKGROVE_TLS_KEY)",
    )
    serve.add_argument(
        "--tls-client-ca",
        dest="tls_client_ca_file",
        metavar="PEM",
        help="require client certificates signed by these CAs (mutual TLS); a caller without "
        "a token is the user its certificate's common name says (env TASKGROVE_TLS_CLIENT_CA)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback address without TLS or authentication (refused otherwise; "
        "warned on every start; env TASKGROVE_INSECURE=1)",
    )
    serve.add_argument(
        "--no-reflection",
        dest="reflection",
        action="store_false",
        default=None,
        help="do not serve gRPC reflection (env TASKGROVE_REFLECTION=0)",
    )
    serve.add_argument(
        "--command-env",
        action="append",
        default=[],
        metavar="NAME",
        help="let command tasks set the environment variable NAME (repeatable; env "
        "TASKGROVE_COMMAND_ENV comma-separated); LD_*, PATH and the like are refused",
    )
    serve.add_argument(
        "--command-cwd",
        action="append",
        default=[],
        metavar="DIR",
        help="let command tasks run in DIR or below (repeatable; env TASKGROVE_COMMAND_CWD); "
        "by default each attempt runs in a fresh temporary directory",
    )
    serve.add_argument(
        "--command-user",
        metavar="NAME",
        help="run commands as NAME (env TASKGROVE_COMMAND_USER; default: nobody when the "
        "server runs as root); `root` only if you say so",
    )
    serve.add_argument(
        "--no-local-executors",
        dest="local_executors",
        action="store_false",
        default=None,
        help="run no executor in the server: every task runs in a worker (env "
        "TASKGROVE_LOCAL_EXECUTORS=0)",
    )
    serve.add_argument(
        "--executors-file",
        metavar="JSON",
        help="declare executors served by workers, so that their tasks can be created "
        "before a worker connects (env TASKGROVE_EXECUTORS_FILE; see docs/workers.md)",
    )
    serve.add_argument(
        "--worker-lease-seconds",
        metavar="SECONDS",
        help="how long a silent worker keeps its attempts (env TASKGROVE_WORKER_LEASE_SECONDS; "
        "default 15)",
    )
    serve.add_argument(
        "--tree-lease-seconds",
        metavar="SECONDS",
        help="replicas on PostgreSQL: how long a stopped replica keeps its trees before "
        "another takes them over (env TASKGROVE_TREE_LEASE_SECONDS; default 15)",
    )
    serve.add_argument(
        "--replica-id",
        metavar="NAME",
        help="replicas on PostgreSQL: this replica's name in the leases (env "
        "TASKGROVE_REPLICA_ID; default HOST:PORT)",
    )
    serve.add_argument(
        "--http",
        dest="http_address",
        metavar="HOST:PORT",
        help="serve the web console (and its gRPC-Web bridge) on http://HOST:PORT/, or `off` "
        "(env TASKGROVE_HTTP; default 127.0.0.1:8080, skipped with a warning when that port "
        "is taken)",
    )
    serve.add_argument(
        "--metrics",
        dest="metrics_address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (env "
        "TASKGROVE_METRICS_ADDRESS; off by default; see docs/operations.md)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="server log lines as text or one JSON object per line (env "
        "TASKGROVE_LOG_FORMAT; text); the level is TASKGROVE_LOG_LEVEL (INFO)",
    )
    serve.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export OpenTelemetry traces over OTLP/gRPC to URL, e.g. http://127.0.0.1:4317 "
        "(env TASKGROVE_OTLP_ENDPOINT, or the standard OTEL_* variables; needs "
        "taskgrove[tracing])",
    )
    serve.set_defaults(handler=run_serve)


def _environment_help() -> str:
    """Every ServerConfig field's variable, with its default where it has a short one."""
    from dataclasses import fields

    from taskgrove_server.config import env_name

    defaults = ServerConfig()
    shown = []
    for spec in fields(ServerConfig):
        value = getattr(defaults, spec.name)
        if spec.name == "db_url":
            value = "an SQLite file under ~/.local/share/taskgrove/"
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, list | dict):
            value = ",".join(value) if value and isinstance(value, list) else ""
        shown.append(f"{env_name(spec.name)}" + (f" ({value})" if value != "" else ""))
    shown.append("TASKGROVE_LOG_LEVEL (INFO)")
    return (
        "Every setting can come from the environment too (flags win; lists comma-separated, "
        f"limits NAME=N,...; flags 1/0): {', '.join(shown)}."
    )


def config_from(args: argparse.Namespace) -> ServerConfig:
    """The environment's configuration with the flags applied over it."""
    config = ServerConfig.from_env()
    if getattr(args, "address", None):
        config.address = args.address
    if args.db:
        config.db_url = args.db
    if args.max_concurrency is not None:
        config.set_text(
            "max_concurrency", args.max_concurrency, f"--max-concurrency {args.max_concurrency}"
        )
    for limit in args.executor_limit:
        limits = ServerConfig()
        limits.set_text("executor_limits", limit, f"--executor-limit {limit}")
        config.executor_limits = {**config.executor_limits, **limits.executor_limits}
    if args.allow_command:
        config.allowed_commands = [*config.allowed_commands, *args.allow_command]
    files = ("tokens_file", "jwt_key_file", "jwt_jwks_file", "jwt_issuer", "jwt_audience")
    for name in (*files, "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        if value := getattr(args, name, None):
            setattr(config, name, value)
    if args.executors_file:
        config.executors_file = args.executors_file
    if (lease := args.worker_lease_seconds) is not None:
        config.set_text("worker_lease_seconds", lease, f"--worker-lease-seconds {lease}")
    if (lease := args.tree_lease_seconds) is not None:
        config.set_text("tree_lease_seconds", lease, f"--tree-lease-seconds {lease}")
    if args.replica_id:
        config.set_text("replica_id", args.replica_id, f"--replica-id {args.replica_id}")
    for name in ("insecure", "reflection", "local_executors"):
        if (value := getattr(args, name, None)) is not None:
            setattr(config, name, value)
    if args.command_env:
        config.command_env = [*config.command_env, *args.command_env]
    if args.command_cwd:
        config.command_cwd = [*config.command_cwd, *args.command_cwd]
    if args.command_user:
        config.command_user = args.command_user
    for name in ("metrics_address", "log_format", "otlp_endpoint"):
        if value := getattr(args, name, None):
            setattr(config, name, value)
    if getattr(args, "http_address", None):
        config.http_address = args.http_address
    elif not config.http_address:
        # Nobody asked for an address: the default console, which must not stop a server
        # from starting beside another one (its port taken is a warning).
        config.http_address = DEFAULT_HTTP_ADDRESS
        config.http_optional = True
    return config


def run_serve(args: argparse.Namespace) -> int:
    # The server itself is imported only when it runs: the client commands stay light.
    from taskgrove_server.app import serve
    from taskgrove_server.auth import AuthConfigError
    from taskgrove_server.observability.logs import configure_logging
    from taskgrove_server.storage.database import DatabaseInUse, DatabaseUnavailable
    from taskgrove_server.storage.migrations import SchemaTooNew

    refused = (ConfigError, DatabaseInUse, DatabaseUnavailable, SchemaTooNew, AuthConfigError)
    try:
        config = config_from(args)
        configure_logging(config.log_format, os.environ.get("TASKGROVE_LOG_LEVEL", "INFO"))
        asyncio.run(serve(config))
    except (*refused, OSError) as error:
        # One line, as the client commands report errors: what is wrong and what to do.
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


def add_db_command(commands: Any) -> None:
    """Add `db upgrade` and `db current` to the `taskgrove` command line's sub-commands."""
    db = commands.add_parser(
        "db",
        help="migrate the server's database (for operators who migrate separately)",
        description="The server's database schema, managed with Alembic. `serve` upgrades "
        "the database itself at start; these commands do it (or look) without serving. A "
        "database it cannot use is one `error:` line on stderr, exit 2.",
    )
    actions = db.add_subparsers(
        dest="db_command", metavar="COMMAND", required=True, help="upgrade or current"
    )
    upgrade = actions.add_parser(
        "upgrade",
        help="apply every missing migration (adopting a database made by taskgrove 0.1)",
        description="Apply every missing migration in one transaction, then exit.",
    )
    current = actions.add_parser(
        "current",
        help="print the database's revision and whether it is the newest",
        description="Print the database's revision and whether it is the head; changes nothing.",
    )
    for parser, handler in ((upgrade, run_db_upgrade), (current, run_db_current)):
        parser.add_argument(
            "--db",
            metavar="URL",
            help="database URL, as `taskgrove serve --db` takes it (env TASKGROVE_DB; "
            "default the SQLite file under ~/.local/share/taskgrove/)",
        )
        parser.set_defaults(handler=handler)


def _db_url(args: argparse.Namespace) -> str:
    return str(args.db) if args.db else ServerConfig.from_env().db_url


def run_db_upgrade(args: argparse.Namespace) -> int:
    from taskgrove_server.storage.migrations import upgrade_database

    def run() -> None:
        applied = asyncio.run(upgrade_database(_db_url(args)))
        if applied:
            print(f"applied migrations {', '.join(f'{v:04d}' for v in applied)}")
        else:
            print("nothing to apply: the database is at the head revision")

    return _refusing(run)


def run_db_current(args: argparse.Namespace) -> int:
    from taskgrove_server.storage.migrations import current_database

    return _refusing(lambda: print(asyncio.run(current_database(_db_url(args)))))


def _refusing(run: Any) -> int:
    from taskgrove_server.storage.database import DatabaseInUse, DatabaseUnavailable
    from taskgrove_server.storage.migrations import SchemaTooNew

    try:
        run()
    except (ConfigError, DatabaseInUse, DatabaseUnavailable, SchemaTooNew, OSError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0
