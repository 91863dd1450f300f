"""`command_executor`: runs an allow-listed program (argv, never a shell).

Disabled unless the operator names the programs it may run (`--allow-command`). What a
task may set beyond argv is the operator's too (`CommandPolicy`): environment variable
names, working directories, the user. Each attempt runs in a fresh temporary directory
(its HOME), as an unprivileged user when the server is root, and nothing it starts
outlives it (`command_process`, `command_launcher`). SECURITY.md has the threat model.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any

from taskgrove.domain import reasons

from taskgrove_server.executors.base import ExecutionContext, Executor, ExecutorError
from taskgrove_server.executors.builtin.command_policy import (
    CommandPolicy,
    CommandUser,
    resolve_program,
)
from taskgrove_server.executors.builtin.command_process import Finished, run_contained

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
MAX_OUTPUT_BYTES = 512 * 1024
"""Per stream: stdout and stderr together stay within a stored result (1 MiB)."""
_DETAIL_CHARS = 2000


def _not_allowed(message: str, **details: Any) -> ExecutorError:
    return ExecutorError(message, reason=reasons.COMMAND_NOT_ALLOWED, details=details)


@contextlib.asynccontextmanager
async def _attempt_dir(user: CommandUser | None) -> AsyncIterator[str]:
    """A fresh directory for one attempt, the command user's, removed afterwards."""

    def make() -> str:
        path = tempfile.mkdtemp(prefix="taskgrove-cmd-")
        if user is not None:
            os.chown(path, user.uid, user.gid)
        return path

    path = await asyncio.to_thread(make)
    try:
        yield path
    finally:
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, path, True))


def _result(argv: list[str], finished: Finished, limit: int) -> dict[str, Any]:
    stdout = finished.stdout.decode(errors="replace")
    stderr = finished.stderr.decode(errors="replace")
    if finished.over_limit is not None:
        raise ExecutorError(
            f"{argv[0]} wrote more than {limit} bytes to {finished.over_limit}; stopped",
            reason=reasons.COMMAND_OUTPUT_LIMIT,
            details={
                "stream": finished.over_limit,
                "max_output_bytes": limit,
                "stdout": stdout[:_DETAIL_CHARS],
                "stderr": stderr[-_DETAIL_CHARS:],
            },
        )
    if finished.exit_code != 0:
        raise ExecutorError(
            f"{argv[0]} exited with {finished.exit_code}",
            reason=reasons.COMMAND_FAILED,
            details={
                "exit_code": finished.exit_code,
                "stdout": stdout[-_DETAIL_CHARS:],
                "stderr": stderr[-_DETAIL_CHARS:],
            },
        )
    return {"exit_code": 0, "stdout": stdout, "stderr": stderr}


def command_executor(allowed: Sequence[str] | CommandPolicy) -> Executor:
    """The executor, allowed to run exactly the given programs (names or paths), with the
    policy's environment names, directories and user."""
    policy = allowed if isinstance(allowed, CommandPolicy) else CommandPolicy.build(allowed)

    async def run(context: ExecutionContext) -> Any:
        # The input schema refused all of this at creation; checked again here because a
        # stored task may predate the operator's current settings.
        inputs = context.inputs
        argv = [str(arg) for arg in inputs["argv"]]
        program = await asyncio.to_thread(resolve_program, argv[0])
        if program not in policy.resolved:
            raise _not_allowed(f"program {argv[0]!r} is not allowed", program=argv[0])
        env = {str(k): str(v) for k, v in inputs.get("env", {}).items()}
        if refused := policy.refused_env(env):
            raise _not_allowed(f"environment variables not allowed: {refused}", env=refused)
        cwd = None
        if "cwd" in inputs:
            cwd = await asyncio.to_thread(policy.allowed_cwd, str(inputs["cwd"]))
            if cwd is None:
                raise _not_allowed(f"cwd {inputs['cwd']!r} is not allowed", cwd=inputs["cwd"])
        limit = int(inputs.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES))
        async with _attempt_dir(policy.user) as home:
            try:
                finished = await run_contained(
                    program,
                    argv[1:],
                    cwd=cwd or home,
                    env=policy.environment(env, home),
                    user=policy.user,
                    limit=limit,
                    log=context.log,
                )
            except (OSError, ValueError) as error:  # e.g. a NUL in an argument
                raise ExecutorError(f"cannot run {argv[0]}: {error}") from None
        return _result(argv, finished, limit)

    return Executor(
        id="command_executor",
        run=run,
        description="Runs an allow-listed program with argv (no shell), contained; output capped.",
        input_schema={
            "type": "object",
            "properties": {
                "argv": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "prefixItems": [{"enum": sorted(policy.programs)}],
                },
                **policy.schema_properties(),
                "max_output_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_OUTPUT_BYTES},
            },
            "required": ["argv"],
            "additionalProperties": False,
        },
    )
