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

from taskgrove_server.config import ConfigError, ServerConfig


def add_serve_command(commands: Any) -> None:
    """Add `serve` to the `taskgrove` command line's sub-commands."""
    serve = commands.add_parser("serve", help="run the server (embedded SQLite by default)")
    serve.add_argument(
        "--address",
        default=argparse.SUPPRESS,
        help="host:port (env TASKGROVE_ADDRESS; 127.0.0.1:50051)",
    )
    serve.add_argument("--db", help="database URL (env TASKGROVE_DB; SQLite file by default)")
    serve.add_argument("--max-concurrency", type=int, help="executor attempts at once")
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
        "warned on every start)",
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
        type=float,
        help="how long a silent worker keeps its attempts (env TASKGROVE_WORKER_LEASE_SECONDS; 15)",
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


def config_from(args: argparse.Namespace) -> ServerConfig:
    """The environment's configuration with the flags applied over it."""
    config = ServerConfig.from_env()
    if getattr(args, "address", None):
        config.address = args.address
    if args.db:
        config.db_url = args.db
    if args.max_concurrency:
        config.max_concurrency = args.max_concurrency
    if args.allow_command:
        config.allowed_commands = [*config.allowed_commands, *args.allow_command]
    files = ("tokens_file", "jwt_key_file", "jwt_jwks_file", "jwt_issuer", "jwt_audience")
    for name in (*files, "tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        if value := getattr(args, name, None):
            setattr(config, name, value)
    if args.executors_file:
        config.executors_file = args.executors_file
    if args.worker_lease_seconds is not None:
        config.worker_lease_seconds = args.worker_lease_seconds
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
    return config


def run_serve(args: argparse.Namespace) -> int:
    # The server itself is imported only when it runs: the client commands stay light.
    from taskgrove_server.app import serve
    from taskgrove_server.auth import AuthConfigError
    from taskgrove_server.observability.logs import configure_logging
    from taskgrove_server.storage.database import DatabaseInUse

    try:
        config = config_from(args)
        configure_logging(config.log_format, os.environ.get("TASKGROVE_LOG_LEVEL", "INFO"))
        asyncio.run(serve(config))
    except (ConfigError, DatabaseInUse, AuthConfigError) as error:
        print(f"taskgrove serve: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"taskgrove serve: {error}", file=sys.stderr)
        return 2
    return 0
