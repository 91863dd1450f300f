"""command_executor's threat model (SECURITY.md, `## command_executor`), point by point,
through a real server on 127.0.0.1 and a real SQLite database, with real processes.

The attacker is a caller who may submit tasks: they choose a command task's `argv` (after
an allowed program), `env`, `cwd`, `max_output_bytes` and `timeout`. The operator chooses
the programs (`allowed_commands`), the variable names (`command_env`), the directories
(`command_cwd`) and the user (`command_user`). What must hold:

- only the named programs run, however argv[0] is spelled, and PATH is never the task's;
- a task's environment holds only names the operator allowed (never LD_*, PATH, PYTHON*
  ...), and nothing of the server's own environment reaches a command;
- a task's `cwd` is refused unless it lies in a directory the operator allowed; otherwise
  every attempt runs in a fresh temporary directory, removed afterwards;
- nothing a command starts outlives its task: not a `setsid` daemon, not a double fork,
  not on cancel, timeout, normal exit, nor when the server itself is SIGKILLed;
- output over the cap stops the command at once (COMMAND_OUTPUT_LIMIT), not at its timeout;
- a server running as root runs commands as an unprivileged user (`nobody` by default).

Every wait is bounded (support.waiting, support.pids); none is a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from support.pids import process_gone, read_pid, read_text, until_gone
from support.trees import ROOT, ids
from support.waiting import WAIT_S, until, until_task, wait_finished
from taskgrove import AsyncClient, InvalidArgumentError, Task, statuses
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.config import ConfigError, ServerConfig
from taskgrove_server.executors.builtin.command_policy import SAFE_PATH
from taskgrove_server.executors.builtin.command_process import LAUNCHER_ENV
from taskgrove_server.testing import ServerProcess, sqlite_url

if TYPE_CHECKING:
    from conftest import ServerFactory

AS_ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody")
COMMAND_UID = NOBODY.pw_uid if AS_ROOT else os.geteuid()
"""Who commands run as by default: `nobody` under root, else the server's own user."""
root_only = pytest.mark.skipif(not AS_ROOT, reason="the privilege drop needs a root server")


# ------------------------------------------------------------------ helpers


def command(argv: list[str], name: str = "cmd", **fields: Any) -> dict[str, Any]:
    """A command_executor task under ROOT; `inputs` in `fields` join `argv`."""
    inputs = {"argv": argv, **fields.pop("inputs", {})}
    return {
        "id": name,
        "name": name,
        "executor": "command_executor",
        "parent_id": "root",
        "inputs": inputs,
        **fields,
    }


async def start(client: AsyncClient, *specs: dict[str, Any]) -> dict[str, str]:
    """Create ROOT and `specs`, executing them; local id -> stored id."""
    return ids(await client.create_task_tree([ROOT, *specs], execute=True))


async def run(client: AsyncClient, argv: list[str], **fields: Any) -> Task:
    """One command task, run to its end (bounded; on timeout, says where it stood)."""
    tid = await start(client, command(argv, **fields))
    try:
        return await wait_finished(client, tid["cmd"])
    except TimeoutError:
        task = await client.get_task(tid["cmd"])
        pytest.fail(f"{argv} did not finish: {task}\nprocesses:\n{process_tree()}")


def process_tree() -> str:
    """This process's descendants (the in-process server's commands among them)."""
    lines = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            parent, status = process.ppid(), process.status()
            lines.append(f"{process.pid} <- {parent} {status} {process.cmdline()}")
    return "\n".join(lines)


async def refused_at_creation(client: AsyncClient, spec: dict[str, Any]) -> InvalidArgumentError:
    """The task is refused (INVALID_INPUTS on its inputs) and nothing is written."""
    before = [t async for t in client.list_tasks()]
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_task_tree([ROOT, spec], execute=True)
    violations = caught.value.field_violations
    assert violations, caught.value
    assert {v.reason for v in violations} == {"INVALID_INPUTS"}, violations
    assert [t async for t in client.list_tasks()] == before
    return caught.value


def failed_with(task: Task, reason: str) -> dict[str, Any]:
    assert task.status == statuses.FAILED, (task.status, task.result)
    assert task.error is not None and task.error.reason == reason, task.error
    return task.error.details


def completed_stdout(task: Task) -> str:
    assert task.status == statuses.COMPLETED, task.error
    assert isinstance(task.result, dict) and task.result["exit_code"] == 0, task.result
    stdout = task.result["stdout"]
    assert isinstance(stdout, str)
    return stdout


def daemon(pid_file: Path, seconds: int = 1000) -> str:
    """Shell text starting a `setsid` grandchild that writes its PID and sleeps: in a
    session of its own, out of the command's process group."""
    return f"setsid sh -c 'echo $$ > {pid_file}; exec sleep {seconds}' &"


def shell_wait_for(*files: Path) -> str:
    """Shell text waiting until every file has content (the command's side of a bounded
    wait: the test's own wait bounds it)."""
    tests = " || ".join(f"[ ! -s {f} ]" for f in files)
    return f"while {tests}; do sleep 0.01; done"


async def session_leader(pid_file: Path) -> int:
    """The PID a daemon wrote, once it is alive in a session of its own."""
    pid = await read_pid(pid_file)
    await until(lambda: not process_gone(pid) and os.getsid(pid) == pid)
    return pid


async def read_lines(path: Path, count: int) -> list[int]:
    """The first `count` PIDs appended to `path`, once they are there (bounded)."""
    await until(lambda: len(read_text(path).split()) >= count)
    return [int(line) for line in read_text(path).split()[:count]]


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def real_temp_dir() -> str:
    return os.path.realpath(tempfile.gettempdir())


Start = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
def start_server(make_server: ServerFactory) -> Start:
    """`await start_server(allowed_commands=[...], command_env=[...], ...)`: a client of an
    in-process server with that configuration."""

    async def starting(**config: Any) -> AsyncClient:
        return make_server.client(await make_server(**config))

    return starting


@pytest.fixture
def preload_library(command_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(library, marker): a real shared object whose constructor appends `PID UID` to the
    marker file, proven to work by preloading it into /bin/true as the command user.
    Without a C compiler the library does not exist: the marker checks then prove nothing,
    the rest of the tests using it still runs."""
    marker = command_dir / "preloaded.txt"
    marker.touch()
    marker.chmod(0o666)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        yield command_dir / "no-compiler.so", marker
        return
    source = command_dir / "preload.c"
    source.write_text(
        "#include <stdio.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void mark(void) {\n"
        f'  FILE *f = fopen("{marker}", "a");\n'
        '  if (f) { fprintf(f, "%d %d\\n", (int)getpid(), (int)getuid()); fclose(f); }\n'
        "}\n"
    )
    library = command_dir / "preload.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, timeout=60
    )
    library.chmod(0o755)
    # The control: the library does run code when a command user's process preloads it.
    user = {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": []} if AS_ROOT else {}
    subprocess.run(["/bin/true"], env={"LD_PRELOAD": str(library)}, check=True, timeout=30, **user)
    assert read_text(marker).split()[1:] == [str(COMMAND_UID)], read_text(marker)
    marker.write_text("")
    yield library, marker


# ------------------------------------------------------------------ the program


async def test_only_the_named_programs_run_however_argv0_is_spelled(
    start_server: Start,
) -> None:
    client = await start_server(allowed_commands=["echo"])
    assert completed_stdout(await run(client, ["echo", "hi"])) == "hi\n"
    for argv0 in ("/bin/echo", "/usr/bin/echo", "../../bin/sh", "./echo", "sh", "echo "):
        await refused_at_creation(client, command([argv0, "hi"]))


async def test_a_program_is_found_on_the_safe_path_never_one_the_task_chooses(
    start_server: Start, command_dir: Path
) -> None:
    """A PATH from the task is refused, and an `echo` planted in the command's working
    directory is not what `echo` runs."""
    trap = command_dir / "trap"
    trap.mkdir()
    trap.chmod(0o777)
    marker = command_dir / "trapped"
    fake = trap / "echo"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\necho fake\n")
    fake.chmod(0o755)
    client = await start_server(
        allowed_commands=["echo"], command_env=["GREETING"], command_cwd=[str(command_dir)]
    )
    await refused_at_creation(client, command(["echo", "hi"], inputs={"env": {"PATH": str(trap)}}))
    task = await run(client, ["echo", "real"], inputs={"cwd": str(trap)})
    assert completed_stdout(task) == "real\n"
    assert not marker.exists()


# ------------------------------------------------------------------ the environment


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "PYTHONSTARTUP", "BASH_ENV", "OTHER"],
)
async def test_a_task_may_set_only_the_names_the_operator_allowed(
    start_server: Start, command_dir: Path, name: str
) -> None:
    client = await start_server(allowed_commands=["env"], command_env=["GREETING"])
    spec = command(["env"], inputs={"env": {"GREETING": "hi", name: str(command_dir)}})
    error = await refused_at_creation(client, spec)
    assert name in str(error.field_violations), error.field_violations


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_AUDIT", "PATH", "PYTHONPATH", "IFS"])
def test_the_operator_cannot_allow_a_name_that_runs_code(tmp_path: Path, name: str) -> None:
    config = ServerConfig(
        address="127.0.0.1:0",
        db_url=sqlite_url(tmp_path / "refused.db"),
        allowed_commands=["env"],
        command_env=["GREETING", name],
    )
    with pytest.raises(ConfigError, match=f"--command-env {name}: refused"):
        TaskgroveServer(config)


async def test_only_the_allowed_names_reach_the_command_and_none_of_the_servers(
    start_server: Start, preload_library: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's own environment (secrets, a preload library, PYTHONPATH) stays out: a
    command gets a fixed base (PATH, LANG, LC_ALL, HOME, TMPDIR) and the task's allowed
    names."""
    library, marker = preload_library
    monkeypatch.setenv("TASKGROVE_TEST_SECRET", "s3cret")
    monkeypatch.setenv("PYTHONPATH", str(library.parent))
    client = await start_server(allowed_commands=["env"], command_env=["GREETING", "TZ"])
    monkeypatch.setenv("LD_PRELOAD", str(library))  # after the server's start: only commands
    task = await run(client, ["env"], inputs={"env": {"GREETING": "hello"}})
    monkeypatch.delenv("LD_PRELOAD")
    env = dict(line.split("=", 1) for line in completed_stdout(task).splitlines())
    home = env.pop("HOME")
    assert env == {
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": home,
        "GREETING": "hello",
    }
    assert read_text(marker) == "", "a process ran with the server's LD_PRELOAD"


async def test_the_launcher_above_a_command_never_holds_the_tasks_environment(
    start_server: Start, command_dir: Path
) -> None:
    """The launcher keeps the server's user (root here): a task's `env` reaches the program
    only, so a locale or time zone path it names is never loaded by a root process."""
    client = await start_server(allowed_commands=["sh"], command_env=["GREETING", "LC_ALL"])
    pid_file = command_dir / "env.pid"
    script = f"echo $$ > {pid_file}; exec sleep 60"
    env = {"GREETING": "hi", "LC_ALL": str(command_dir)}
    tid = await start(client, command(["sh", "-c", script], inputs={"env": env}))
    program = psutil.Process(await read_pid(pid_file))
    launcher = program.parent()
    assert launcher is not None and launcher.uids().effective == os.geteuid()
    assert {k: program.environ().get(k) for k in env} == env
    assert launcher.environ() == LAUNCHER_ENV
    assert await client.cancel_task(tid["cmd"]) == [tid["cmd"]]
    await until_gone(program.pid)


async def test_a_stored_task_with_settings_no_longer_allowed_does_not_run(
    make_server: ServerFactory, tmp_path: Path, command_dir: Path, preload_library: Any
) -> None:
    """Tasks stored before the operator narrowed the settings (or by an older version that
    let `env` and `cwd` through, as at b9e9a60) are checked again when they run: refused
    with COMMAND_NOT_ALLOWED, and the command never starts."""
    library, marker = preload_library
    ran = command_dir / "ran"
    db_url = sqlite_url(tmp_path / "stored.db")
    script = ["sh", "-c", f"touch {ran}"]
    before = await make_server(
        db_url=db_url,
        allowed_commands=["sh"],
        command_env=["GREETING"],
        command_cwd=[str(command_dir)],
    )
    created = await make_server.client(before).create_task_tree(
        [
            ROOT,
            command(script, "env", inputs={"env": {"GREETING": "hi"}}),
            command(script, "cwd", inputs={"cwd": str(command_dir)}),
            command(script, "preload"),
            command(script, "program"),
        ]
    )
    await make_server.stop(before)
    tid = ids(created)
    tampered = {
        "preload": {"argv": script, "env": {"LD_PRELOAD": str(library), "PATH": "/tmp"}},
        "program": {"argv": ["/usr/bin/env", "touch", str(ran)]},
    }
    with sqlite3.connect(tmp_path / "stored.db") as db:
        for local, inputs in tampered.items():
            db.execute("UPDATE tasks SET inputs = ? WHERE id = ?", (json.dumps(inputs), tid[local]))

    after = await make_server(db_url=db_url, allowed_commands=["sh"])
    client = make_server.client(after)
    await client.execute_task(tid["root"])
    expected = {
        "env": {"env": ["GREETING"]},
        "cwd": {"cwd": str(command_dir)},
        "preload": {"env": ["LD_PRELOAD", "PATH"]},
        "program": {"program": "/usr/bin/env"},
    }
    for local, details in expected.items():
        task = await wait_finished(client, tid[local])
        assert failed_with(task, "COMMAND_NOT_ALLOWED") == details, local
    assert not ran.exists()
    assert read_text(marker) == ""


# ------------------------------------------------------------------ the working directory


async def test_a_cwd_is_refused_unless_the_operator_allows_its_directory(
    start_server: Start, command_dir: Path
) -> None:
    closed = await start_server(allowed_commands=["pwd"])
    await refused_at_creation(closed, command(["pwd"], inputs={"cwd": str(command_dir)}))

    inside = command_dir / "work"
    inside.mkdir()
    (command_dir / "escape").symlink_to("/etc")
    client = await start_server(allowed_commands=["pwd"], command_cwd=[str(command_dir)])
    for cwd in ("/etc", "/", f"{command_dir}/../../etc", f"{command_dir}-other", "work"):
        await refused_at_creation(client, command(["pwd"], inputs={"cwd": cwd}))
    task = await run(client, ["pwd"], inputs={"cwd": str(inside)})
    assert completed_stdout(task) == f"{inside}\n"
    # Lexically inside, really /etc: refused when it runs (the real path is checked).
    task = await run(client, ["pwd"], inputs={"cwd": str(command_dir / "escape")})
    assert failed_with(task, "COMMAND_NOT_ALLOWED") == {"cwd": str(command_dir / "escape")}


async def test_every_attempt_runs_in_a_fresh_directory_removed_afterwards(
    start_server: Start, command_dir: Path
) -> None:
    record = command_dir / "dirs.txt"
    record.touch()
    record.chmod(0o666)
    client = await start_server(allowed_commands=["sh"])
    probe = 'pwd; echo "$HOME"; stat -c "%u %a" .; readlink /proc/$$/fd/0; ls -A; echo x > f'
    task = await run(client, ["sh", "-c", probe])
    cwd, home, owner, stdin, *listing = completed_stdout(task).splitlines()
    assert stdin == "/dev/null"
    assert os.path.dirname(cwd) == real_temp_dir()
    assert Path(cwd).name.startswith("taskgrove-cmd-")
    assert home == cwd
    assert owner == f"{COMMAND_UID} 700"  # the command user's, private
    assert listing == []  # empty when it starts
    assert not exists(cwd)  # removed with what the command left there

    # Two attempts of one task: two directories, neither left behind.
    task = await run(
        client,
        ["sh", "-c", f"pwd >> {record}; exit 3"],
        max_attempts=2,
        retry_backoff=0.01,
    )
    failed_with(task, "COMMAND_FAILED")
    first, second = read_text(record).splitlines()
    assert first != second and cwd not in (first, second)
    assert not exists(first) and not exists(second)

    # Cancelled: removed too.
    pid_file = command_dir / "cancelled.pid"
    script = f"pwd > {record}; echo $$ > {pid_file}; exec sleep 60"
    tid = await start(client, command(["sh", "-c", script]))
    await read_pid(pid_file)
    cancelled_dir = Path(read_text(record))
    assert exists(cancelled_dir)
    await client.cancel_task(tid["cmd"])
    assert (await wait_finished(client, tid["cmd"])).status == statuses.CANCELLED
    await until(lambda: not exists(cancelled_dir))


# ------------------------------------------------------------------ containment


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_a_setsid_grandchild_dies_with_its_task(
    start_server: Start, command_dir: Path, stop: str
) -> None:
    """A `setsid` daemon (own session, own group: the process group kill misses it) and a
    double-forked one (orphaned at once) are killed on cancel and on timeout."""
    client = await start_server(allowed_commands=["sh"])
    a, b = command_dir / "a.pid", command_dir / "b.pid"
    script = f"{daemon(a)} ( {daemon(b)} ); wait"
    # The timeout leaves the daemons ample time to start and write their PIDs.
    fields = {"timeout": 3.0} if stop == "timeout" else {}
    tid = await start(client, command(["sh", "-c", script], **fields))
    pids = [await session_leader(a), await session_leader(b)]
    if stop == "cancel":
        assert await client.cancel_task(tid["cmd"]) == [tid["cmd"]]
    task = await wait_finished(client, tid["cmd"])
    if stop == "cancel":
        assert task.status == statuses.CANCELLED
    else:
        failed_with(task, "TIMEOUT")
    for pid in pids:
        await until_gone(pid)


async def test_a_setsid_grandchild_dies_when_its_command_exits(
    start_server: Start, command_dir: Path
) -> None:
    """The command exits 0 at once, leaving daemons that hold its stdout: the task still
    completes promptly, and by then they are gone (killed before the launcher exits)."""
    client = await start_server(allowed_commands=["sh"])
    a, b = command_dir / "a.pid", command_dir / "b.pid"
    script = f"{daemon(a)} ( {daemon(b)} ); {shell_wait_for(a, b)}; echo started"
    task = await run(client, ["sh", "-c", script], timeout=60)
    assert completed_stdout(task) == "started\n"
    for pid_file in (a, b):
        pid = int(read_text(pid_file))
        assert process_gone(pid), f"daemon {pid} outlived its task"


async def test_a_command_being_stopped_is_reaped_before_the_server_stops(
    make_server: ServerFactory, command_dir: Path
) -> None:
    """CancelTask, then the server's shutdown at once: the attempt is cancelled twice, and
    stopping the server still waits until the launcher has killed the command (one that
    ignores SIGTERM, so that takes the launcher's grace, then SIGKILL). Before, the second
    cancellation ended the attempt at once and left the launcher running, unreaped."""
    instance = await make_server(allowed_commands=["sh"])
    client = make_server.client(instance)
    pid_file = command_dir / "stubborn.pid"
    script = f"trap '' TERM; echo $$ > {pid_file}; while :; do sleep 0.05; done"
    tid = await start(client, command(["sh", "-c", script]))
    pid = await read_pid(pid_file)
    launcher = psutil.Process(pid).ppid()
    assert await client.cancel_task(tid["cmd"]) == [tid["cmd"]]
    await make_server.stop(instance)
    assert process_gone(pid), "the command outlived the server's stop"
    assert process_gone(launcher), "the launcher outlived the server's stop"


@pytest.fixture
def killable_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        sqlite_url(tmp_path / "killed.db"), extra_env={"TASKGROVE_ALLOW_COMMANDS": "sh"}
    )
    yield process
    process.stop(signal.SIGKILL)


async def test_no_command_process_survives_a_server_sigkill(
    killable_server: ServerProcess, command_dir: Path
) -> None:
    """`taskgrove serve` SIGKILLed mid-command: the launcher, the command and its `setsid`
    daemon die with it (parent-death signals), so the restart's second attempt runs
    alone, not beside an orphan of the first."""
    shells, daemons = command_dir / "shells.txt", command_dir / "daemons.txt"
    for path in (shells, daemons):
        path.touch()
        path.chmod(0o666)
    script = f"echo $$ >> {shells}; setsid sh -c 'echo $$ >> {daemons}; exec sleep 1000' & wait"
    proc = killable_server
    proc.start()
    async with AsyncClient(proc.address) as client:
        tid = await start(client, command(["sh", "-c", script], max_attempts=2))
        (shell,) = await read_lines(shells, 1)
        (first,) = await read_lines(daemons, 1)
        await until(lambda: not process_gone(first) and os.getsid(first) == first)
        launcher = psutil.Process(shell).ppid()
        assert psutil.Process(launcher).ppid() == proc.pid  # server -> launcher -> shell
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL

    for pid in (launcher, shell, first):
        await until_gone(pid)

    proc.start()  # same database: the interrupted attempt runs again
    async with AsyncClient(proc.address) as client:
        _, second = await read_lines(daemons, 2)
        task = await until_task(client, tid["cmd"], lambda t: t.status == statuses.IN_PROGRESS)
        assert task.attempt == 2
        assert process_gone(first) and not process_gone(second)
        assert await client.cancel_task(tid["cmd"]) == [tid["cmd"]]
        await until_gone(second)
        assert (await wait_finished(client, tid["cmd"])).status == statuses.CANCELLED


# ------------------------------------------------------------------ output


@pytest.mark.parametrize(
    ("argv", "stream", "limit"),
    [
        (["yes"], "stdout", None),
        (["sh", "-c", "echo $$ > {pid}; exec yes >&2"], "stderr", 1000),
        (["sh", "-c", "setsid sh -c 'echo $$ > {pid}; exec yes' & wait"], "stdout", 4096),
    ],
    ids=["yes", "yes-to-stderr", "setsid-yes"],
)
async def test_a_flood_is_stopped_at_the_cap_not_at_its_timeout(
    start_server: Start, command_dir: Path, argv: list[str], stream: str, limit: int | None
) -> None:
    client = await start_server(allowed_commands=["yes", "sh"])
    pid_file = command_dir / "flood.pid"
    argv = [arg.format(pid=pid_file) for arg in argv]
    inputs = {} if limit is None else {"max_output_bytes": limit}
    task = await run(client, argv, inputs=inputs, timeout=600)  # bounded by WAIT_S
    details = failed_with(task, "COMMAND_OUTPUT_LIMIT")
    assert details["stream"] == stream
    assert details["max_output_bytes"] == (limit or 256 * 1024)
    assert details[stream].startswith("y\ny\n")
    assert task.start_time is not None and task.end_time is not None
    assert (task.end_time - task.start_time).total_seconds() < WAIT_S
    if pid_file.exists():
        await until_gone(int(read_text(pid_file)))


# ------------------------------------------------------------------ the user


@root_only
async def test_under_root_commands_run_as_nobody(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    instance = await make_server(allowed_commands=["sh"])
    client = make_server.client(instance)
    task = await run(client, ["sh", "-c", "id -u; id -g; id -G"])
    nobody = [str(NOBODY.pw_uid), str(NOBODY.pw_gid), str(NOBODY.pw_gid)]
    assert completed_stdout(task).split() == nobody  # no supplementary groups (root's 0)

    # So it cannot read the server's database, nor signal the launcher above it (which
    # keeps root and would otherwise let its daemons escape).
    db = instance.config.db_url.removeprefix("sqlite+aiosqlite:///")
    assert exists(db)
    details = failed_with(await run(client, ["sh", "-c", f"cat {db}"]), "COMMAND_FAILED")
    assert "Permission denied" in details["stderr"]
    details = failed_with(await run(client, ["sh", "-c", "kill -KILL $PPID"]), "COMMAND_FAILED")
    assert "not permitted" in details["stderr"]


@root_only
async def test_the_operator_chooses_the_user_and_root_only_by_name(start_server: Start) -> None:
    client = await start_server(allowed_commands=["id"], command_user="root")
    assert completed_stdout(await run(client, ["id", "-u"])) == "0\n"
    with pytest.raises(ConfigError, match="no such user"):
        await start_server(allowed_commands=["id"], command_user="no-such-user-tg")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--command-env", "LD_PRELOAD"], "--command-env LD_PRELOAD: refused"),
        (["--command-env", "NOT-A-NAME"], "not an environment variable name"),
        (["--command-cwd", "/nonexistent/taskgrove"], "not a directory"),
        (["--command-user", "no-such-user-tg"], "no such user"),
    ],
)
def test_serve_refuses_a_dangerous_or_wrong_setting_in_one_line(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    serve = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0"]
    db = ["--db", sqlite_url(tmp_path / "refused.db"), "--allow-command", "echo"]
    done = subprocess.run(
        [*serve, *db, *flags], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "serving on" not in done.stdout


# The environment variables behave as the flags do.
def test_serve_reads_the_command_settings_from_the_environment(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "taskgrove._cli", "serve", "--address", "127.0.0.1:0"]
    env = {
        **os.environ,
        "TASKGROVE_DB": sqlite_url(tmp_path / "refused.db"),
        "TASKGROVE_ALLOW_COMMANDS": "echo",
        "TASKGROVE_COMMAND_ENV": "GREETING,PYTHONPATH",
    }
    done = subprocess.run(
        serve, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "--command-env PYTHONPATH: refused" in done.stderr
