"""Arguments of the client commands. Command modules (and rich, yaml) are imported only
when their command runs, so `taskgrove serve` and `--help` stay light."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from taskgrove._config import (
    ADDRESS_ENV,
    CA_FILE_ENV,
    CERT_FILE_ENV,
    DEFAULT_ADDRESS,
    KEY_FILE_ENV,
    TOKEN_ENV,
)
from taskgrove.domain import statuses

Handler = Callable[[argparse.Namespace], int]


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _status(text: str) -> str:
    """A status as `ls --status` takes it: `running` (as the views say) is `in_progress`."""
    return statuses.IN_PROGRESS if text == "running" else text


def _add_follow_arguments(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """`--no-live`, `--json` and `--timeout` as `run` has them."""
    parser.add_argument("--no-live", action="store_true", help="print only the final summary")
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop waiting after SECONDS (exit 3; the tree keeps running)",
    )


_FOLLOW_EXITS = (
    "Exit 0 if every task completed, 1 if anything failed or was cancelled, 3 on --timeout."
)


def _run_worker(args: argparse.Namespace) -> int:
    from taskgrove.cli.worker import run

    return run(args)


def _add_connection_arguments(parser: argparse.ArgumentParser, *, subcommand: bool) -> None:
    """The flags that say how to reach the server. On a sub-command they default to
    nothing (SUPPRESS), so that one given before the command name is not overwritten."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    parser.add_argument(
        "--address",
        default=default(None),
        help=f"server host:port (env {ADDRESS_ENV}; default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--rpc-timeout",
        type=_positive_float,
        default=default(30.0),
        metavar="SECONDS",
        help="deadline of each call of a client command (default 30)",
    )
    parser.add_argument(
        "--ca-file",
        default=default(None),
        metavar="PEM",
        help=f"connect with TLS, trusting these CA certificates (env {CA_FILE_ENV}); "
        "--tls uses the system's",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect with TLS, trusting the system's CA certificates",
    )
    parser.add_argument(
        "--client-cert",
        default=default(None),
        metavar="PEM",
        help=f"client certificate for mutual TLS (env {CERT_FILE_ENV}; with --client-key)",
    )
    parser.add_argument(
        "--client-key",
        default=default(None),
        metavar="PEM",
        help=f"private key of --client-cert (env {KEY_FILE_ENV})",
    )
    parser.add_argument(
        "--token-file",
        default=default(None),
        metavar="FILE",
        help=f"read the bearer token from FILE (else env {TOKEN_ENV}; never a flag's value, "
        "which other users could read in the process list)",
    )


def connection_options() -> argparse.ArgumentParser:
    """The connection flags, accepted after the command name too."""
    parent = argparse.ArgumentParser(add_help=False)
    _add_connection_arguments(parent, subcommand=True)
    return parent


def add_global_options(parser: argparse.ArgumentParser) -> None:
    _add_connection_arguments(parser, subcommand=False)


def _handler(module: str, function: str) -> Handler:
    """Run `taskgrove.cli.<module>.<function>` as a client command."""

    def handle(args: argparse.Namespace) -> int:
        from taskgrove.cli.session import run_command

        command = getattr(importlib.import_module(f"taskgrove.cli.{module}"), function)
        return run_command(command, args)

    return handle


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `run`, `watch`, `get`, `tree`, `ls`, `cancel`, `retry`, `copy`, `explain`,
    `logs`, `executors` and `worker`."""
    common = [connection_options()]

    run = commands.add_parser(
        "run",
        parents=common,
        help="create a tree from a JSON/YAML file, execute it and follow it live",
        description="Create the tree described by FILE (JSON or YAML; - for stdin), execute "
        "it, show it live, then print a summary. Exit 0 if every task completed, 1 if "
        "anything failed or was cancelled, 2 if the file or request is invalid, 3 on "
        "--timeout.",
    )
    run.add_argument("file", metavar="FILE", help="a tree file (JSON or YAML; - for stdin)")
    _add_follow_arguments(run, json_help="print the summary as JSON only")
    run.set_defaults(handler=_handler("run", "run_tree"))

    execute = commands.add_parser(
        "execute",
        parents=common,
        help="execute a pending task with its subtree and follow it live, as run does",
        description="Execute ID (a pending tree or task: a copy made without --execute, a "
        "tree created with the SDK) with its whole subtree, show it live, then print a "
        f"summary. {_FOLLOW_EXITS}",
    )
    execute.add_argument("id", metavar="ID", help="the task or tree to execute")
    _add_follow_arguments(execute, json_help="print the summary as JSON only")
    execute.set_defaults(handler=_handler("follow", "execute_tree"))

    watch = commands.add_parser(
        "watch",
        parents=common,
        help="print the events of a tree or a task as they happen",
        description="Print the events of ID's tree (ID a root) or of the task ID: history "
        "after --after, then live. Without ID: every task's events (of --user).",
    )
    watch.add_argument("id", metavar="ID", nargs="?", help="a root (its tree) or any task")
    watch.add_argument("--json", action="store_true", help="one JSON object per event and line")
    watch.add_argument(
        "--after",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="start after sequence N (default 0: all retained history)",
    )
    watch.add_argument(
        "--until-done",
        action="store_true",
        help="exit once ID has finished: 0 if it completed, 1 otherwise",
    )
    watch.add_argument(
        "--tree",
        action="store_true",
        help="show ID's tree live (as run does) until it has finished, then its summary; "
        "exit codes as run",
    )
    watch.add_argument(
        "--no-live", action="store_true", help="with --tree: print only the final summary"
    )
    watch.add_argument("--user", help="only tasks of this owner")
    watch.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop after SECONDS (exit 3)",
    )
    watch.set_defaults(handler=_handler("watch", "watch_events"))

    get = commands.add_parser(
        "get",
        parents=common,
        help="show one task",
        description="Show the task ID: status, progress, timing, inputs, result or error, "
        "its dependencies, and each attempt's start, end, outcome and error (from its "
        "events; 'history pruned' once a finished tree's events are gone).",
    )
    get.add_argument("id", metavar="ID", help="the task's id")
    get.add_argument("--json", action="store_true", help="the task as JSON, with its `attempts`")
    get.set_defaults(handler=_handler("commands", "get_task"))

    tree = commands.add_parser(
        "tree",
        parents=common,
        help="show the stored subtree of a task with its progress",
        description="Show ID and the tasks below it as a tree, with each one's status and "
        "progress (as the live view of `run` draws it).",
    )
    tree.add_argument("id", metavar="ID", help="the task at the top of the tree shown")
    tree.add_argument(
        "--depth",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="levels below ID (default 0: all)",
    )
    tree.add_argument(
        "--max-children",
        type=_non_negative_int,
        default=20,
        metavar="N",
        help="children shown per group, the rest summarised (default 20; 0: all)",
    )
    tree.add_argument("--json", action="store_true", help="nested JSON with `children`")
    tree.set_defaults(handler=_handler("commands", "show_tree"))

    ls = commands.add_parser(
        "ls",
        parents=common,
        help="list tasks, newest first",
        description="List tasks, newest first (--oldest-first: in creation order), "
        "filtered by status, owner, parent, name or roots only.",
    )
    ls.add_argument(
        "--status",
        action="append",
        type=_status,
        choices=statuses.ALL,
        metavar="STATUS",
        help=f"only tasks with this status (repeatable): {', '.join(statuses.ALL)}; "
        "running is in_progress",
    )
    ls.add_argument(
        "--oldest-first", action="store_true", help="in creation order (default: newest first)"
    )
    ls.add_argument("--roots", action="store_true", help="only roots (top tasks of trees)")
    ls.add_argument("--user", help="only tasks of this owner")
    ls.add_argument("--parent", metavar="ID", help="only children of this task")
    ls.add_argument(
        "--name",
        metavar="TEXT",
        help="only tasks whose name contains TEXT (ignoring case; %% and _ are literal)",
    )
    ls.add_argument(
        "--limit",
        type=_non_negative_int,
        default=100,
        metavar="N",
        help="at most N tasks (default 100; 0: all)",
    )
    ls.add_argument("--json", action="store_true", help="a JSON array of tasks")
    ls.set_defaults(handler=_handler("commands", "list_tasks"))

    for name, function, summary, description in (
        (
            "cancel",
            "cancel_task",
            "cancel a task and everything unfinished below it",
            "Cancel ID and every unfinished task below it (running executors are stopped); "
            "prints the ids this call cancelled.",
        ),
        (
            "explain",
            "explain_task",
            "say why a task is not running yet",
            "Say why ID is where it is: the dependencies it waits for, a retry backoff, a "
            "concurrency or executor limit, its place in the queue.",
        ),
    ):
        action = commands.add_parser(name, parents=common, help=summary, description=description)
        action.add_argument("id", metavar="ID", help="the task's id")
        action.add_argument("--json", action="store_true", help="the reply as JSON")
        action.set_defaults(handler=_handler("control", function))

    retry = commands.add_parser(
        "retry",
        parents=common,
        help="run a failed or cancelled task (and what failed with it) again",
        description="Run ID again with its failed or cancelled descendants and the "
        "dependents that failed because of them. With --follow, show it live until it "
        f"ends, as run does. {_FOLLOW_EXITS}",
    )
    retry.add_argument("id", metavar="ID", help="the failed or cancelled task")
    retry.add_argument("-f", "--follow", action="store_true", help="follow it live, as run does")
    _add_follow_arguments(retry, json_help="the reply (with --follow: the summary) as JSON")
    retry.set_defaults(handler=_handler("control", "retry_task"))

    copy = commands.add_parser(
        "copy",
        parents=common,
        help="copy a subtree as a new tree (originals are kept)",
        description="Copy ID and the tasks below it as a new tree (pending, or run with "
        "--execute); prints which original became which copy.",
    )
    copy.add_argument("id", metavar="ID", help="the top of the subtree copied")
    copy.add_argument(
        "--only-unfinished",
        action="store_true",
        help="copy only what did not complete (with the groups above it)",
    )
    copy.add_argument("--execute", action="store_true", help="run the copy at once")
    copy.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="run the copy (implies --execute) and follow it live, as run does; exit codes as run",
    )
    _add_follow_arguments(
        copy, json_help="original id -> copy id (with --follow: the summary) as JSON"
    )
    copy.set_defaults(handler=_handler("control", "copy_tree"))

    logs = commands.add_parser(
        "logs",
        parents=common,
        help="print the lines a task's executor logged",
        description="Print the log of ID's latest attempt (the last 1,000 lines and 1 MiB "
        "are kept per attempt). With --follow, keep printing new lines, and each retry's, "
        "until the task ends.",
    )
    logs.add_argument("id", metavar="ID", help="the task's id")
    logs.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    logs.add_argument(
        "--attempt",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="this attempt's log (1: the first; default 0: the latest)",
    )
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.set_defaults(handler=_handler("logs", "show_logs"))

    executors = commands.add_parser(
        "executors",
        parents=common,
        help="list the executors the server runs",
        description="List the executors of the server: where each runs (the server, or "
        "workers), what it does, and for a disabled one how to enable it.",
    )
    executors.add_argument("--json", action="store_true", help="with input schemas, as JSON")
    executors.set_defaults(handler=_handler("commands", "list_executors"))

    worker = commands.add_parser(
        "worker",
        parents=common,
        help="serve the executors of a taskgrove.Worker (MODULE:OBJECT) from this process",
        description="Import MODULE, take its taskgrove.Worker OBJECT and serve its executors "
        "to the server from this process until interrupted (see docs/workers.md).",
    )
    worker.add_argument("target", metavar="MODULE:OBJECT", help="e.g. myapp.jobs:worker")
    worker.add_argument(
        "--slots", type=_positive_int, help="attempts run at once (default: the Worker's own)"
    )
    worker.add_argument("--name", help="the worker's name, as ListExecutors shows it")
    worker.set_defaults(handler=_run_worker)
