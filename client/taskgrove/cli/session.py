"""Running a client command: connecting, reporting errors, and the exit codes.

Exit codes of every client command:

- 0: done (for `run` and `watch --until-done`: the tree or task completed);
- 1: the tree or task ended failed or cancelled;
- 2: the request or file was invalid, the server refused it, or the server is unreachable
  (`error: REASON: message` on standard error, with the field violations);
- 3: gave up waiting (`--timeout`); the tasks keep running on the server;
- 130: interrupted (Ctrl-C); 141: standard output was closed (`... | head`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import grpc

from taskgrove._client import AsyncClient
from taskgrove._errors import FieldViolation, TaskgroveError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

WATCH_RECONNECTS = 20
"""Reconnections of a watch in a row before the CLI gives up on an unreachable server
(with the SDK's backoff capped at 5 s, about a minute)."""

Command = Callable[[AsyncClient, argparse.Namespace], Awaitable[int]]
FieldDescriber = Callable[[str], str]


class CommandError(Exception):
    """An error the CLI reports itself (not from the server): `error: REASON: message`."""

    def __init__(self, reason: str, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details or []


def error_lines(
    error: TaskgroveError, address: str, describe_field: FieldDescriber | None = None
) -> list[str]:
    """The lines printed for a failed call: the reason and message, then the violations."""
    if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and (
        not error.reason
    ):
        return [
            f"error: UNAVAILABLE: cannot reach the taskgrove server at {address} "
            f"({error.message}); is it running? (--address or TASKGROVE_ADDRESS)"
        ]
    reason = error.reason or error.code.name
    violations = error.field_violations

    def where(field_path: str) -> str:
        return describe_field(field_path) if describe_field else field_path

    def problem(violation: FieldViolation) -> str:
        other = violation.reason and violation.reason != reason
        suffix = f" ({violation.reason})" if other else ""
        return f"{where(violation.field)}: {violation.description}{suffix}"

    # The server's message is often its violations joined: say each thing once.
    joined = "; ".join(f"{v.field}: {v.description}" for v in violations)
    if len(violations) == 1 and error.message == joined:
        return [f"error: {reason}: {problem(violations[0])}"]
    if len(violations) == 1 and violations[0].description in error.message:
        return [f"error: {reason}: {error.message}"]
    if violations and error.message == joined:
        total = int(error.metadata.get("violations_total", len(violations)))
        header = f"error: {reason}: {total} problems"
        if total > len(violations):
            header += f" (the first {len(violations)} shown)"
        return [header, *(f"  {problem(v)}" for v in violations)]
    return [f"error: {reason}: {error.message}", *(f"  {problem(v)}" for v in violations)]


def report(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def report_command_error(error: CommandError) -> None:
    report([f"error: {error.reason}: {error.message}", *(f"  {d}" for d in error.details)])


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Connect to `--address`, run the command, and turn failures into exit codes."""
    from taskgrove.cli.connection import client_config

    try:
        config = client_config(args)
    except CommandError as error:
        report_command_error(error)
        return EXIT_ERROR
    address = config.address

    async def main() -> int:
        async with AsyncClient(config=config) as client:
            return await command(client, args)

    try:
        return asyncio.run(main())
    except TaskgroveError as error:
        report(error_lines(error, address))
        return EXIT_ERROR
    except CommandError as error:
        report_command_error(error)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away: write nothing more (not even at interpreter exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
