"""`taskgrove logs ID`: the lines a task's executor logged, optionally followed live."""

from __future__ import annotations

import argparse
import sys

from taskgrove._client import AsyncClient
from taskgrove.cli.output import print_json
from taskgrove.cli.session import EXIT_OK


async def show_logs(client: AsyncClient, args: argparse.Namespace) -> int:
    """Print the log of ID's latest attempt (or --attempt N); --follow keeps printing new
    lines, and each retry's, until the task ends."""
    shown = None
    count = 0
    async for line in client.task_logs(args.id, attempt=args.attempt, follow=args.follow):
        count += 1
        if args.json:
            print_json(
                {
                    "attempt": line.attempt,
                    "sequence": line.sequence,
                    "time": line.time.isoformat() if line.time else None,
                    "text": line.text,
                    "cut_before": line.cut_before,
                },
                indent=None,
            )
            continue
        if line.attempt != shown:
            if shown is not None or args.follow:
                print(f"--- attempt {line.attempt} ---", flush=True)
            shown = line.attempt
        if line.cut_before:
            print(f"[{line.cut_before} earlier lines cut]", flush=True)
        print(line.text, flush=True)
    if count == 0 and not args.json:
        print("no log lines", file=sys.stderr)
    return EXIT_OK
