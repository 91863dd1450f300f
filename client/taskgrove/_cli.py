"""The `taskgrove` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from taskgrove.cli.parser import add_client_commands, add_global_options


def _serve(args: argparse.Namespace) -> int:
    # The server is imported only here: SDK users never load it.
    from taskgrove_server.app import serve
    from taskgrove_server.config import ServerConfig

    config = ServerConfig.from_env()
    if args.address:
        config.address = args.address
    if args.db:
        config.db_url = args.db
    if args.max_concurrency:
        config.max_concurrency = args.max_concurrency
    if args.allow_command:
        config.allowed_commands = [*config.allowed_commands, *args.allow_command]
    logging.basicConfig(level=os.environ.get("TASKGROVE_LOG_LEVEL", "INFO"))
    asyncio.run(serve(config))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskgrove",
        description=__doc__,
        epilog="Client commands exit 0 on success, 1 when the tree or task failed or was "
        "cancelled, 2 on an invalid request or file or an unreachable server, 3 on --timeout.",
    )
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
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
    serve.set_defaults(handler=_serve)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
