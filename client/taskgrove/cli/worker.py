"""`taskgrove worker MODULE:OBJECT`: run a `Worker` defined in Python code."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from dataclasses import replace

from taskgrove._errors import TaskgroveError
from taskgrove._worker import Worker, run_worker
from taskgrove.cli.session import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    error_lines,
    report,
    report_command_error,
)


def load_worker(target: str) -> Worker:
    """The `Worker` named `module:attribute` (the current directory is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CommandError("INVALID_ARGUMENT", f"{target!r}: expected MODULE:OBJECT")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CommandError("INVALID_ARGUMENT", f"cannot import {module_name}: {error}") from None
    found = getattr(module, attribute, None)
    if not isinstance(found, Worker):
        raise CommandError(
            "INVALID_ARGUMENT", f"{target} is {type(found).__name__}, not a taskgrove.Worker"
        )
    return found


def run(args: argparse.Namespace) -> int:
    from taskgrove.cli.connection import client_config

    logging.basicConfig(
        level=os.environ.get("TASKGROVE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        worker = load_worker(args.target)
        config = replace(client_config(args), timeout=None)
    except CommandError as error:
        report_command_error(error)
        return EXIT_ERROR
    if args.slots is not None:
        worker.slots = args.slots
    if args.name:
        worker.name = args.name
    try:
        asyncio.run(run_worker(worker, config))
    except TaskgroveError as error:
        report(error_lines(error, config.address))
        return EXIT_ERROR
    except ValueError as error:
        report([f"error: INVALID_ARGUMENT: {error}"])
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK
