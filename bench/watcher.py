"""WatchEvents subscribers for the benchmark: `follow_root` is used in-process by the
throughput scenario; the script runs as separate processes (`WatcherProcess`, for the
event-latency and fan-out scenarios) so that watchers do not share the harness's event loop.

    python bench/watcher.py latency --address HOST:PORT
        One stream on every event (include_snapshot). Prints `ready SEQ` after the snapshot,
        then one line per event received:
        `ev SEQUENCE TASK_ID TYPE STATUS EVENT_TIME_US RECEIVE_TIME_NS`
        (receive time: this process's wall clock, taken when the message arrived).

    python bench/watcher.py fanout --address HOST:PORT --root ID --after SEQ --streams N
        N streams on one tree, resuming after SEQ. Prints `ready` once every stream is
        established (first heartbeat), then one JSON line when every stream has seen the
        root's terminal status event.

Both stop by themselves after --max-seconds (bounded), and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from connection import open_channel
from taskgrove._watch import watch_responses
from taskgrove.v1 import event_pb2, task_pb2, task_service_pb2, task_service_pb2_grpc

TERMINAL = frozenset(
    {task_pb2.TASK_STATUS_COMPLETED, task_pb2.TASK_STATUS_FAILED, task_pb2.TASK_STATUS_CANCELLED}
)
STATUS_CHANGED = event_pb2.TASK_EVENT_TYPE_STATUS_CHANGED
MAX_RECONNECTS = 50
"""Failures in a row after which a subscriber gives up."""
MAX_BACKOFF_S = 0.5


def monotonic() -> float:
    """CLOCK_MONOTONIC: one clock for every process of the machine (Linux)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass(slots=True)
class Followed:
    """What one subscriber of a tree saw."""

    events: int = 0
    messages: int = 0
    reconnects: int = 0
    snapshot_tasks: int = 0
    snapshot_sequence: int = 0
    root_status: str = ""
    done_at: float = 0.0
    """CLOCK_MONOTONIC when the message with the root's terminal status event arrived."""


async def follow_root(
    stub: task_service_pb2_grpc.TaskServiceStub,
    root_id: str,
    *,
    after_sequence: int = 0,
    include_snapshot: bool = False,
    heartbeat_s: float | None = None,
    ready: asyncio.Event | None = None,
) -> Followed:
    """Watch the tree of `root_id` until its root's terminal status event. The SDK's resume
    loop (`taskgrove._watch.watch_responses`) gives every event once and resumes after
    UNAVAILABLE / RESOURCE_EXHAUSTED; this reads its raw messages. `ready` is set once the
    snapshot is complete (or, without one, at the first message). The caller bounds the
    time."""
    seen = Followed()

    def count_reconnect(_: grpc.aio.AioRpcError) -> None:
        seen.reconnects += 1

    request = task_service_pb2.WatchEventsRequest(
        root_id=root_id, after_sequence=after_sequence, include_snapshot=include_snapshot
    )
    if heartbeat_s is not None:
        request.heartbeat_interval.FromTimedelta(timedelta(seconds=heartbeat_s))
    responses = watch_responses(
        stub,
        request,
        max_backoff=MAX_BACKOFF_S,
        max_reconnects=MAX_RECONNECTS,
        on_reconnect=count_reconnect,
    )
    need_snapshot = include_snapshot
    async with contextlib.aclosing(responses):  # leaving cancels the call
        async for response in responses:
            arrived = monotonic()
            seen.messages += 1
            if need_snapshot:
                # A large snapshot spans several messages (yielded once it is whole).
                seen.snapshot_tasks += len(response.snapshot)
                if response.snapshot_complete:
                    need_snapshot = False
                    seen.snapshot_sequence = response.sequence
                    if ready is not None:
                        ready.set()
                continue
            if ready is not None:
                ready.set()
            for event in response.events:
                seen.events += 1
                if (
                    event.task_id == root_id
                    and event.type == STATUS_CHANGED
                    and event.status in TERMINAL
                ):
                    seen.root_status = task_pb2.TaskStatus.Name(event.status)
                    seen.done_at = arrived
                    return seen
    raise RuntimeError("the watch stream ended before the root finished")


# ---------------------------------------------------------------------------- the harness's side


class WatcherProcess:
    """This script as a subprocess (`latency` or `fanout` and their options) whose stdout
    lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), *args]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )

    async def line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            stderr = b""
            if self.process.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        stderr = await self.process.stderr.read()
            raise RuntimeError(f"watcher process ended: {stderr.decode(errors='replace')[-2000:]}")
        return raw.decode().strip()

    async def stop(self) -> None:
        """SIGTERM its PID, a bounded wait, SIGKILL if needed."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


# ---------------------------------------------------------------------------- the subprocess's side


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def latency_main(address: str) -> None:
    """Every event of the server, one line each, receive time taken on arrival.

    The bare stream, not the resume loop: nothing comes between a message's arrival and
    its timestamp, and a broken stream on this idle server ends the scenario (an error)."""
    async with open_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        request = task_service_pb2.WatchEventsRequest(include_snapshot=True)
        first = True
        async for response in stub.WatchEvents(request):
            received_ns = time.time_ns()
            if first:
                first = False
                _emit(f"ready {response.sequence}")
                continue
            for event in response.events:
                stamp = event.time.seconds * 1_000_000 + event.time.nanos // 1000
                _emit(
                    f"ev {event.sequence} {event.task_id} {event.type} {event.status} "
                    f"{stamp} {received_ns}"
                )


async def fanout_main(address: str, root_id: str, after: int, streams: int) -> None:
    """`streams` subscribers of one tree on one channel; one JSON summary at the end."""
    async with open_channel(address) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        readies = [asyncio.Event() for _ in range(streams)]
        followers = [
            asyncio.create_task(
                follow_root(stub, root_id, after_sequence=after, heartbeat_s=0.25, ready=ready)
            )
            for ready in readies
        ]
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(ready.wait() for ready in readies))
        )
        pending: list[asyncio.Future[Any]] = [all_ready, *followers]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=60)
        if not all_ready.done():
            for follower in followers:
                if follower.done():
                    follower.result()  # raises what ended it
            raise RuntimeError("streams not established within 60 s")
        _emit("ready")
        results = await asyncio.gather(*followers)
    summary = {
        "streams": streams,
        "events": sum(r.events for r in results),
        "messages": sum(r.messages for r in results),
        "reconnects": sum(r.reconnects for r in results),
        "done_at": max(r.done_at for r in results),
        "first_done_at": min(r.done_at for r in results),
        "root_statuses": sorted({r.root_status for r in results}),
        "per_stream_events": sorted({r.events for r in results}),
        "followed": [asdict(r) for r in results[:1]],
    }
    _emit(json.dumps(summary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    latency = sub.add_parser("latency")
    fanout = sub.add_parser("fanout")
    for mode in (latency, fanout):
        mode.add_argument("--address", required=True)
        mode.add_argument("--max-seconds", type=float, default=600.0)
    fanout.add_argument("--root", required=True)
    fanout.add_argument("--after", type=int, default=0)
    fanout.add_argument("--streams", type=int, default=1)
    args = parser.parse_args(argv)
    if args.mode == "latency":
        work = latency_main(args.address)
    else:
        work = fanout_main(args.address, args.root, args.after, args.streams)

    async def bounded() -> None:
        async with asyncio.timeout(args.max_seconds):
            await work

    try:
        asyncio.run(bounded())
    except TimeoutError:
        print(f"watcher: stopped after {args.max_seconds:g} s", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
