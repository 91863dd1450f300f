"""What the operator lets `command_executor` do: which programs, which environment variable
names, which working directories, and as which user. Built once at start: a dangerous
setting is a `ConfigError` then, not a surprise when a task runs."""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskgrove_server.config import ConfigError

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

REFUSED_ENV = (
    # the dynamic loader and glibc: preload or replace code, tunables (CVE-2023-4911)
    *("LD_*", "DYLD_*", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_*", "LOCPATH", "NLSPATH"),
    *("HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN"),
    # shells: startup files, functions, word splitting, where programs are found
    *("PATH", "IFS", "CDPATH", "ENV", "BASH_ENV", "BASH_FUNC_*", "SHELLOPTS", "BASHOPTS"),
    *("PS4", "PROMPT_COMMAND"),
    # interpreters that load modules or run code named in their environment
    *("PYTHON*", "PERL*", "RUBY*", "NODE_*", "LUA_*", "TCL*", "GIT_*"),
    *("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS"),
)
"""Names a task may never set, whatever the operator allows (fnmatch patterns)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class CommandUser:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    programs: tuple[str, ...]
    """As the operator named them (the input schema lists these)."""
    resolved: frozenset[str]
    """Their real paths: what a task's program must resolve to."""
    env_names: tuple[str, ...]
    cwd_dirs: tuple[str, ...]
    """Real paths of the directories a task's `cwd` may resolve into."""
    cwd_prefixes: tuple[str, ...]
    """Those and the operator's spelling of them (what the schema checks lexically)."""
    user: CommandUser | None
    """None: commands run as the server's own user."""

    @classmethod
    def build(
        cls,
        programs: Sequence[str],
        *,
        env_names: Sequence[str] = (),
        cwd_dirs: Sequence[str] = (),
        user: str = "",
    ) -> CommandPolicy:
        """Raises ConfigError for a program that is not there, a refused variable name, a
        missing directory or user."""
        for program in programs:
            if missing := program_problem(program):
                raise ConfigError(f"--allow-command {program}: {missing}")
        for name in env_names:
            if not _NAME.match(name):
                raise ConfigError(f"--command-env {name!r}: not an environment variable name")
            if refused(name):
                raise ConfigError(
                    f"--command-env {name}: refused; a task setting it could run code in "
                    f"the command (refused: {', '.join(REFUSED_ENV)})"
                )
        real_dirs = []
        for directory in cwd_dirs:
            real = os.path.realpath(directory)
            if not os.path.isdir(real):
                raise ConfigError(f"--command-cwd {directory}: not a directory")
            real_dirs.append(real)
        spelled = [os.path.abspath(d) for d in cwd_dirs]
        return cls(
            programs=tuple(programs),
            resolved=frozenset(resolve_program(p) for p in programs),
            env_names=tuple(sorted(set(env_names))),
            cwd_dirs=tuple(real_dirs),
            cwd_prefixes=tuple(sorted({*real_dirs, *spelled})),
            user=_command_user(user),
        )

    def refused_env(self, env: Iterable[str]) -> list[str]:
        """The names in `env` a task may not set."""
        return sorted(n for n in env if n not in self.env_names or refused(n))

    def environment(self, env: Mapping[str, str], home: str) -> dict[str, str]:
        """The whole environment of a command: a fixed base and the task's allowed `env`."""
        base = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        base |= {"HOME": home, "TMPDIR": home}
        return base | {k: v for k, v in env.items() if k in self.env_names and not refused(k)}

    def allowed_cwd(self, cwd: str) -> str | None:
        """The real path of `cwd` if it lies inside an allowed directory (blocking)."""
        real = os.path.realpath(cwd)
        inside = any(os.path.commonpath([real, d]) == d for d in self.cwd_dirs)
        return real if inside and os.path.isdir(real) else None

    def schema_properties(self) -> dict[str, Any]:
        """`env` and `cwd` of the input schema: refused at creation, not only at run time."""
        env = {
            "type": "object",
            "properties": {name: {"type": "string"} for name in self.env_names},
            "additionalProperties": False,
        }
        if not self.cwd_prefixes:
            return {"env": env}  # `cwd` is then an unexpected property
        inside = "|".join(re.escape(p.rstrip("/")) for p in self.cwd_prefixes)
        cwd = {
            "type": "string",
            "pattern": f"^(?:{inside})(?:/|$)",
            "not": {"pattern": r"(?:^|/)\.\.(?:/|$)"},
        }
        return {"env": env, "cwd": cwd}


def refused(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in REFUSED_ENV)


def program_problem(program: str) -> str | None:
    """Why `program` (a name found on PATH, or a path) cannot run (None: it can)."""
    if not program.strip():
        return "an empty program name"
    if os.sep in program:
        if not os.path.isfile(program):
            return "no such file; give an existing program's path"
        if not os.access(program, os.X_OK):
            return "not executable"
        return None
    if shutil.which(program) is None:
        return (
            f"no program of that name on PATH ({os.environ.get('PATH', '')}); install it or "
            "give its full path"
        )
    return None


def resolve_program(program: str) -> str:
    """The real path a program name or path runs (the allow-list compares these)."""
    return os.path.realpath(shutil.which(program) or program)


def _command_user(name: str) -> CommandUser | None:
    as_root = os.geteuid() == 0
    if not name:
        if not as_root:
            return None
        name = "nobody"  # never root by default
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"--command-user {name}: no such user") from None
    if entry.pw_uid == os.geteuid():
        return None
    if not as_root:
        raise ConfigError(f"--command-user {name}: only a server running as root can switch")
    return CommandUser(name, entry.pw_uid, entry.pw_gid)
