"""`command_executor`: runs an allow-listed program (argv, never a shell).

Disabled unless the operator names the programs it may run (`--allow-command`). The
program gets its own process group, so cancellation and timeouts end it together with
everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Sequence
from typing import Any

from taskgrove.domain import reasons

from taskgrove_server.executors.base import ExecutionContext, Executor, ExecutorError

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
MAX_OUTPUT_BYTES = 512 * 1024
"""Per stream: stdout and stderr together stay within a stored result (1 MiB)."""
_KILL_GRACE_S = 2.0


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read everything (so the program never blocks on a full pipe), keep `limit` bytes."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(65536):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        truncated = truncated or len(chunk) > room
    return bytes(kept), truncated


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole group, SIGKILL it if it lingers."""
    _signal_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), _KILL_GRACE_S)
    except TimeoutError:
        _signal_group(process, signal.SIGKILL)
        await process.wait()
    _signal_group(process, signal.SIGKILL)  # stragglers that left the leader behind


def _resolve(program: str) -> str:
    """The real path a program name or path runs (the allow-list compares these)."""
    return os.path.realpath(shutil.which(program) or program)


def command_executor(allowed: Sequence[str]) -> Executor:
    """The executor, allowed to run exactly the given programs (names or paths)."""
    resolved = {_resolve(p) for p in allowed}

    async def run(context: ExecutionContext) -> Any:
        argv = [str(arg) for arg in context.inputs["argv"]]
        program = await asyncio.to_thread(_resolve, argv[0])
        if program not in resolved:
            raise ExecutorError(
                f"program {argv[0]!r} is not allowed", reason=reasons.COMMAND_NOT_ALLOWED
            )
        limit = int(context.inputs.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES))
        env = {**os.environ, **{k: str(v) for k, v in context.inputs.get("env", {}).items()}}
        process = await asyncio.create_subprocess_exec(
            program,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=context.inputs.get("cwd"),
            env=env,
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            (stdout, out_cut), (stderr, err_cut) = await asyncio.gather(
                _read_capped(process.stdout, limit), _read_capped(process.stderr, limit)
            )
            code = await process.wait()
        except asyncio.CancelledError:
            await asyncio.shield(_stop(process))
            raise
        result: dict[str, Any] = {
            "exit_code": code,
            "stdout": stdout.decode(errors="replace"),
            "stderr": stderr.decode(errors="replace"),
            "truncated": out_cut or err_cut,
        }
        if code != 0:
            raise ExecutorError(
                f"{argv[0]} exited with {code}",
                reason=reasons.COMMAND_FAILED,
                details={"exit_code": code, "stderr": result["stderr"][-2000:]},
            )
        return result

    return Executor(
        id="command_executor",
        run=run,
        description="Runs an allow-listed program with argv (no shell); output capped.",
        input_schema={
            "type": "object",
            "properties": {
                "argv": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "prefixItems": [{"enum": sorted(allowed)}],
                },
                "cwd": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "max_output_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_OUTPUT_BYTES},
            },
            "required": ["argv"],
            "additionalProperties": False,
        },
    )
