"""The `taskgrove` command line: the client commands, and `serve` where the server is
installed (it adds itself through the entry point group `taskgrove.cli`)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from taskgrove import __version__
from taskgrove.cli.parser import add_client_commands, add_global_options

COMMANDS_GROUP = "taskgrove.cli"
SERVER_MISSING = "taskgrove serve needs the server: pip install 'taskgrove[server]'"


def _server_missing(args: argparse.Namespace) -> int:
    print(f"error: {SERVER_MISSING}", file=sys.stderr)
    return 2


def _add_plugin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    names = set()
    for point in entry_points(group=COMMANDS_GROUP):
        try:
            add = point.load()
        except ImportError:
            continue  # installed without its extra (e.g. `serve` without the server's)
        add(commands)
        names.add(point.name)
    if "serve" not in names:
        serve = commands.add_parser(
            "serve", help="run the server (needs taskgrove[server])", description=SERVER_MISSING
        )
        serve.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        serve.set_defaults(handler=_server_missing)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskgrove",
        description="Create, run, follow and steer task trees on a taskgrove server; "
        "`taskgrove serve` runs the server itself. `taskgrove COMMAND --help` describes each "
        "command.",
        epilog="Client commands exit 0 on success, 1 when the tree or task failed or was "
        "cancelled, 2 on an invalid request or file or an unreachable server, 3 on --timeout.",
    )
    parser.add_argument("--version", action="version", version=f"taskgrove {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_plugin_commands(commands)
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse.REMAINDER does not take options (`serve --address ...`): without the server,
    # whatever follows `serve` is ignored and the hint printed instead of a usage error.
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:  # `taskgrove` alone: what it can do, not a usage error
        parser.print_help(sys.stderr)
        return 2
    if unknown and args.handler is not _server_missing:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
