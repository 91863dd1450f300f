"""Summarise a py-spy `--format raw --threads` profile (collapsed stacks) of the server.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 10]

Prints, as % of all (non-idle) samples: the share of each thread, the share of each
event-loop activity (the callback the loop was running: an RPC handler, the writer, an
executor attempt...), the top functions by self time and by inclusive time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_LOOP_CALLBACK = "Handle._run (asyncio/events.py"
_IMPORT = "_find_and_load ("


@dataclass(slots=True)
class Profile:
    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)


def _function(frame: str) -> str:
    """`func (file:line)` -> `func (file)`, so all lines of a function add up."""
    match = _FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def _thread(frame: str) -> str:
    """`thread (123): MainThread` -> `MainThread`; unnamed threads share one label."""
    name = frame.split(": ", 1)[1] if ": " in frame else frame
    return "MainThread" if name == "MainThread" else re.sub(r"\d+", "N", name)


def _activity(frames: list[str]) -> str:
    """What the main thread was doing: for a loop callback, the first frame below the
    loop's Handle._run (skipping the error-mapping wrapper so RPC handlers show by name).
    SQLAlchemy runs statements in a greenlet whose stack does not show its caller."""
    for index, frame in enumerate(frames):
        if frame.startswith(_LOOP_CALLBACK):
            rest = [f for f in frames[index + 1 :] if not f.startswith("maps_errors")]
            return _function(rest[0]) if rest else "(event loop: callback)"
    if not frames:
        return "(no Python frame)"
    if "sqlalchemy/" in frames[0]:
        return f"(greenlet) {_function(frames[0])}"
    if frames[-1].startswith("EpollSelector.select"):
        return "(event loop: in epoll)"
    return "(other)"


def parse(lines: Iterable[str], *, keep_startup: bool = False) -> Profile:
    """Stacks that import modules are startup (the server runs under py-spy from its
    launch); they are left out unless `keep_startup`."""
    profile = Profile()
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if not match or (not keep_startup and _IMPORT in match["stack"]):
            continue
        count = int(match["count"])
        thread, *frames = match["stack"].split(";")
        name = _thread(thread)
        profile.total += count
        profile.threads[name] += count
        if name == "MainThread":
            profile.activities[_activity(frames)] += count
        if frames:
            profile.self_time[_function(frames[-1])] += count
        for function in dict.fromkeys(_function(frame) for frame in frames):
            profile.inclusive[function] += count
    return profile


def _rows(counter: Counter[str], total: int, top: int) -> Iterator[str]:
    for name, count in counter.most_common(top):
        yield f"  {100 * count / total:5.1f}%  {name}"


_NOISE = ("<module>", "_run_module_as_main", "_run_code", "main (", "_serve (", "run (")


def report(profile: Profile, top: int) -> str:
    total = max(profile.total, 1)
    inclusive = Counter(
        {
            name: count
            for name, count in profile.inclusive.items()
            if not name.startswith(_NOISE) and "asyncio/" not in name and "threading.py" not in name
        }
    )
    parts = [
        f"{profile.total} samples (idle and startup imports excluded)",
        "threads:",
        *_rows(profile.threads, total, top),
        "event-loop activity (main thread):",
        *_rows(profile.activities, total, top),
        f"top {top} by self time:",
        *_rows(profile.self_time, total, top),
        f"top {top} by inclusive time (asyncio/threading plumbing left out):",
        *_rows(inclusive, total, top),
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--keep-startup", action="store_true", help="count import stacks too")
    args = parser.parse_args()
    with args.profile.open() as lines:
        print(report(parse(lines, keep_startup=args.keep_startup), args.top))


if __name__ == "__main__":
    main()
