"""Executor registry: built-ins, entry points and server configuration."""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import jsonschema

from taskgrove_server.executors.base import Executor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "taskgrove.executors"

_MEMO_MAX_KEY = 512
"""Inputs whose JSON is at most this long have their verdict remembered."""
_MEMO_MAX_ENTRIES = 4096

COMMAND_EXECUTOR = "command_executor"
ENABLE_COMMANDS = "start the server with --allow-command PROGRAM (or TASKGROVE_ALLOW_COMMANDS)"
COMMAND_DESCRIPTION = "Runs an allow-listed program with argv (no shell), contained."


@dataclass(frozen=True, slots=True)
class DisabledExecutor:
    """An executor this server has but does not run until the operator enables it."""

    id: str
    description: str
    how_to_enable: str


class ExecutorRegistry:
    def __init__(self, executors: Iterable[Executor] = ()) -> None:
        self._executors: dict[str, Executor] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._disabled: dict[str, DisabledExecutor] = {}
        self._verdicts: dict[tuple[str, str], list[str]] = {}
        """(executor, inputs as canonical JSON) -> their errors: the tasks of a tree (and
        a tutorial's one-by-one creates) mostly repeat the same small inputs, and a
        schema check costs ten times the encoding."""
        for executor in executors:
            self.register(executor)

    @classmethod
    def default(
        cls,
        *,
        load_entry_points: bool = True,
        local: bool = True,
        allowed_commands: Sequence[str] = (),
        command_env: Sequence[str] = (),
        command_cwd: Sequence[str] = (),
        command_user: str = "",
    ) -> ExecutorRegistry:
        """The built-in executors plus those installed under the entry point group;
        `command_executor` only when `allowed_commands` names programs it may run (with
        the other `command_*` settings; a refused one raises `ConfigError`). With `local`
        false, none: every executor is served by workers."""
        from taskgrove_server.executors.builtin import BUILTIN_EXECUTORS
        from taskgrove_server.executors.builtin.command import command_executor
        from taskgrove_server.executors.builtin.command_policy import CommandPolicy

        registry = cls(BUILTIN_EXECUTORS if local else ())
        if not local:
            return registry  # every executor runs in workers
        if allowed_commands:
            policy = CommandPolicy.build(
                allowed_commands, env_names=command_env, cwd_dirs=command_cwd, user=command_user
            )
            registry.register(command_executor(policy))
        else:
            registry.disable(
                DisabledExecutor(COMMAND_EXECUTOR, COMMAND_DESCRIPTION, ENABLE_COMMANDS)
            )
        if load_entry_points:
            registry.load_entry_points()
        return registry

    def disable(self, executor: DisabledExecutor) -> None:
        """Name an executor that exists but is switched off (listed, and its tasks refused
        with how to enable it); registering one of that id later enables it."""
        self._disabled[executor.id] = executor

    def disabled(self) -> list[DisabledExecutor]:
        """The switched-off executors (not registered now), by id."""
        return sorted(
            (d for d in self._disabled.values() if d.id not in self._executors),
            key=lambda d: d.id,
        )

    def unknown(self, executor_id: str) -> str:
        """Why there is no executor `executor_id`, and what to do: how to enable a disabled
        one, else the closest registered names (or the list of them)."""
        shown = repr(executor_id if len(executor_id) <= 80 else executor_id[:80] + "...")
        if (off := self._disabled.get(executor_id)) is not None:
            return f"executor {shown} is disabled on this server: {off.how_to_enable}"
        names = sorted({*self._executors, *self._disabled})
        close = difflib.get_close_matches(executor_id, names, n=1, cutoff=0.6)
        if close:
            return f"executor {shown} is not registered; did you mean {close[0]!r}?"
        listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        return f"executor {shown} is not registered (registered: {listed or 'none'})"

    def register(self, executor: Executor) -> None:
        if executor.id in self._executors:
            raise ValueError(f"executor {executor.id!r} is registered twice")
        validator_class = jsonschema.validators.validator_for(executor.input_schema)
        validator_class.check_schema(dict(executor.input_schema))
        self._executors[executor.id] = executor
        self._validators[executor.id] = validator_class(dict(executor.input_schema))
        self._verdicts.clear()  # a remote executor's schema may have changed

    def register_remote(self, executor: Executor) -> None:
        """Register an executor served by workers, or replace the one of that id (a new
        schema); an executor the server runs itself is never replaced."""
        current = self._executors.pop(executor.id, None)
        if current is not None and not current.remote:
            self._executors[executor.id] = current
            raise ValueError(f"executor {executor.id!r} runs in the server")
        self._validators.pop(executor.id, None)
        self.register(executor)

    def load_entry_points(self) -> None:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = point.load()
            executor = loaded() if callable(loaded) and not isinstance(loaded, Executor) else loaded
            if not isinstance(executor, Executor):
                log.error("entry point %s is not a taskgrove Executor; ignored", point.name)
                continue
            self.register(executor)

    def get(self, executor_id: str) -> Executor | None:
        return self._executors.get(executor_id)

    def __contains__(self, executor_id: object) -> bool:
        return executor_id in self._executors

    def __iter__(self) -> Any:
        return iter(sorted(self._executors.values(), key=lambda e: e.id))

    def input_errors(self, executor_id: str, inputs: Mapping[str, Any]) -> list[str]:
        """Messages of every schema violation of `inputs` (empty when valid)."""
        try:
            text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            return self._check(executor_id, inputs)
        if len(text) > _MEMO_MAX_KEY:
            return self._check(executor_id, inputs)
        key = (executor_id, text)
        errors = self._verdicts.get(key)
        if errors is None:
            errors = self._check(executor_id, inputs)
            if len(self._verdicts) >= _MEMO_MAX_ENTRIES:
                self._verdicts.clear()
            self._verdicts[key] = errors
        return list(errors)

    def _check(self, executor_id: str, inputs: Mapping[str, Any]) -> list[str]:
        validator = self._validators[executor_id]
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in sorted(
                validator.iter_errors(inputs), key=lambda e: [str(p) for p in e.path]
            )
        ]
