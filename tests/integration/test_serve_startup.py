"""`taskgrove serve` refusing to start, as a real subprocess: each problem is one `error:`
line on stderr with what to do, exit 2, and nothing is created before it is found (the
busy port is found before the database is touched)."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path

import pytest
from support.processes import Finished
from support.waiting import WAIT_S
from taskgrove import AsyncClient
from taskgrove_server.config import ServerConfig, env_name
from taskgrove_server.storage.database import open_database
from taskgrove_server.storage.migrations import latest_version, migrate
from taskgrove_server.testing import LOOPBACK, ServerProcess, sqlite_url

pytestmark = pytest.mark.timeout(120)

NUMERIC_FIELDS = [
    spec.name for spec in fields(ServerConfig) if spec.type in ("int", "float", "dict[str, int]")
]


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without TASKGROVE_* settings, HOME in the test's directory (so the
    default database would be made there, where the test looks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGROVE_")}
    env |= {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "PYTHONUNBUFFERED": "1"}
    env["TASKGROVE_HTTP"] = "off"  # no web console on its default port: tests run side by side
    return {**env, **(extra or {})}


def serve(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None, db: str | None = None
) -> Finished:
    """Run `taskgrove serve` until it exits (these runs all refuse to start)."""
    url = db if db is not None else sqlite_url(tmp_path / "db" / "tg.db")
    command = [sys.executable, "-m", "taskgrove._cli", "serve", "--db", url]
    if "--address" not in args:
        command += ["--address", f"{LOOPBACK}:0"]
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(tmp_path, env),
        stdin=subprocess.DEVNULL,
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def refused(result: Finished) -> str:
    """The one error line of a refused start (asserting that is what happened)."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.explain()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.explain()
    assert "serving on" not in result.stdout, result.explain()
    return lines[0]


def created(tmp_path: Path) -> list[str]:
    """What the server left in the test's directory (its database, data directory...)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield holder.getsockname()[1]


# ------------------------------------------------------------------ address and database


def test_a_busy_port_is_one_line_and_no_database_is_made(tmp_path: Path, busy_port: int) -> None:
    line = refused(serve(tmp_path, "--address", f"{LOOPBACK}:{busy_port}"))
    assert f"cannot listen on {LOOPBACK}:{busy_port}: the port is in use" in line
    assert "--address" in line
    assert created(tmp_path) == []  # not migrated, not even the directory or the lock


def test_an_address_without_a_port_is_one_line(tmp_path: Path) -> None:
    line = refused(serve(tmp_path, "--address", LOOPBACK))
    assert "HOST:PORT" in line
    assert created(tmp_path) == []


def test_a_plain_path_as_db_says_which_url_to_give(tmp_path: Path) -> None:
    path = tmp_path / "db" / "tg.db"
    line = refused(serve(tmp_path, db=str(path)))
    assert f"give --db sqlite+aiosqlite:///{path}" in line
    assert created(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/tg.db", "begin it with sqlite+aiosqlite://"),
        ("postgresql://u:secret@127.0.0.1:1/x", "begin it with postgresql+asyncpg://"),
        ("mysql+aiomysql://u@127.0.0.1/x", "mysql is not supported"),
        ("sqlite aiosqlite://{tmp}/tg.db", "cannot be parsed"),
    ],
)
def test_a_database_url_the_server_cannot_use_is_one_line(
    tmp_path: Path, url: str, expected: str
) -> None:
    line = refused(serve(tmp_path, db=url.format(tmp=tmp_path)))
    assert expected in line
    assert "secret" not in line
    assert created(tmp_path) == []


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    # Port 1 of the loopback: nothing listens, the connection is refused at once.
    line = refused(serve(tmp_path, db="postgresql+asyncpg://tg:secret@127.0.0.1:1/taskgrove"))
    assert "cannot open the database postgresql+asyncpg://tg:***@127.0.0.1:1/taskgrove" in line
    assert "is PostgreSQL running there" in line
    assert "secret" not in line


def test_a_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    line = refused(serve(tmp_path, db=sqlite_url(tmp_path / "file" / "sub" / "tg.db")))
    assert "cannot create the directory of the database" in line
    assert created(tmp_path) == ["file"]


def test_a_database_with_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "tg.db"

    async def make() -> None:
        db = open_database(sqlite_url(path))
        await migrate(db)
        await db.dispose()

    asyncio.run(make())
    newer = latest_version() + 1
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (f"{newer:04d}",))
    line = refused(serve(tmp_path, db=sqlite_url(path)))
    assert f"schema is at version {newer}, newer than this server's {latest_version()}" in line
    assert "upgrade taskgrove" in line
    with sqlite3.connect(path) as connection:
        versions = [v for (v,) in connection.execute("SELECT version_num FROM alembic_version")]
    assert versions == [f"{newer:04d}"]


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-concurrency", "-1"], "--max-concurrency -1: must be a whole number >= 1"),
        (["--max-concurrency", "0"], "--max-concurrency 0: must be a whole number >= 1"),
        (["--max-concurrency", "abc"], "--max-concurrency abc: 'abc' is not a whole number"),
        (["--max-concurrency", "1.5"], "'1.5' is not a whole number"),
        (["--executor-limit", "sleep_executor"], "'sleep_executor' is not NAME=N"),
        (["--executor-limit", "sleep_executor=0"], "--executor-limit sleep_executor=0: must be"),
        (["--executor-limit", "sleep_executor=x"], "'x' is not a whole number"),
        (["--worker-lease-seconds", "0"], "--worker-lease-seconds 0: must be a number of seconds"),
        (["--worker-lease-seconds", "soon"], "'soon' is not a number"),
        (["--tree-lease-seconds", "0"], "--tree-lease-seconds 0: must be a number of seconds"),
        (["--replica-id", "r" * 65], "must be at most 64 characters, without spaces"),
        (["--replica-id", "a b"], "--replica-id a b: must be at most 64 characters"),
    ],
)
def test_a_bad_number_in_a_flag_is_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    line = refused(serve(tmp_path, *args))
    assert expected in line
    assert created(tmp_path) == []


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
def test_a_bad_number_in_the_environment_is_one_line(tmp_path: Path, name: str) -> None:
    """Every numeric setting: a value that is no number, then one out of its bounds."""
    variable = env_name(name)
    bad = "x=0" if name == "executor_limits" else "-1"
    for value in ("abc", bad):
        line = refused(serve(tmp_path, env={variable: value}))
        assert line.startswith(f"error: {variable}={value}: "), line
        assert "give" in line or "must be" in line
        assert created(tmp_path) == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TASKGROVE_LOG_LEVEL", "chatty", "give DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ("TASKGROVE_REFLECTION", "maybe", "expected 1/0, true/false, yes/no or on/off"),
    ],
)
def test_a_bad_level_or_switch_in_the_environment_is_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    line = refused(serve(tmp_path, env={variable: value}))
    assert line == f"error: {variable}={value}: {expected}"
    assert created(tmp_path) == []


class LimitedServer(ServerProcess):
    def command(self, port: int = 0) -> list[str]:
        return [*super().command(port), "--executor-limit", "sleep_executor=1"]


async def test_the_executor_limits_come_from_flags_over_the_environment(tmp_path: Path) -> None:
    """`--executor-limit` adds to (and overrides) TASKGROVE_EXECUTOR_LIMITS: of two sleeps,
    one runs and `explain` says the other waits for the executor's limit of 1."""
    server = LimitedServer(
        sqlite_url(tmp_path / "tg.db"),
        extra_env={"TASKGROVE_EXECUTOR_LIMITS": "sleep_executor=5,system_info_executor=2"},
    )
    with server:
        async with AsyncClient(server.address) as client:
            created_tasks = await client.create_task_tree(
                [
                    {"id": "r", "name": "two"},
                    *(
                        {
                            "id": ref,
                            "parent_id": "r",
                            "name": ref,
                            "executor": "sleep_executor",
                            "inputs": {"seconds": 60},
                        }
                        for ref in ("a", "b")
                    ),
                ],
                execute=True,
            )
            root = created_tasks["r"]
            children = [created_tasks["a"], created_tasks["b"]]
            waits: list[str] = []

            async def one_waits_for_the_limit() -> bool:
                for child in children:
                    why = await client.explain_task(child.id)
                    if "EXECUTOR_LIMIT" in why.reasons:
                        waits.append(why.summary)
                        return True
                return False

            async with asyncio.timeout(WAIT_S):
                while not await one_waits_for_the_limit():  # noqa: ASYNC110 (polls the server)
                    await asyncio.sleep(0.02)
            assert "executor sleep_executor runs 1 of 1" in waits[0]
            await client.cancel_task(root.id)


# ------------------------------------------------------------------ command_executor


def test_an_allowed_program_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    line = refused(serve(tmp_path, "--allow-command", "echo", "--allow-command", "no-such-prog"))
    assert "--allow-command no-such-prog: no program of that name on PATH" in line
    assert created(tmp_path) == []
    line = refused(serve(tmp_path, env={"TASKGROVE_ALLOW_COMMANDS": f"{tmp_path}/nothing"}))
    assert f"--allow-command {tmp_path}/nothing: no such file" in line


def test_the_allowed_programs_and_unknown_executor_limits_are_logged_at_start(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        sqlite_url(tmp_path / "tg.db"),
        extra_env={
            "TASKGROVE_LOG_LEVEL": "INFO",
            "TASKGROVE_ALLOW_COMMANDS": "echo,true",
            "TASKGROVE_EXECUTOR_LIMITS": "sleep_executor=2,nosuch_executor=1",
        },
    )
    with server:
        pass
    log = server.log_tail(200)
    assert "command_executor may run: echo (/" in log, log
    assert ", true (/" in log, log
    # A limit for an executor nobody has is said once, not refused (a worker may bring it).
    assert "executor limit nosuch_executor=1: no executor of that name here yet" in log, log
    assert "sleep_executor=2" not in log, log


def test_without_allowed_programs_the_cli_lists_command_executor_as_disabled(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "cmd.yaml"
    tree.write_text(
        textwrap.dedent(
            """\
            name: cmd
            children:
              - {name: hello, executor: command_executor, inputs: {argv: [echo, hi]}}
              - {name: nap, executor: sleep_exector, inputs: {seconds: 0}}
            """
        )
    )
    with ServerProcess(sqlite_url(tmp_path / "tg.db")) as server:
        base = [sys.executable, "-m", "taskgrove._cli", "--address", server.address]
        listed = subprocess.run([*base, "executors"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if "command_executor" in line)
        assert "disabled" in row and "--allow-command PROGRAM" in row, listed.stdout
        run = subprocess.run([*base, "run", str(tree)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    # Each problem once: the header, then one line per task.
    assert run.stderr.splitlines() == [
        "error: UNKNOWN_EXECUTOR: 2 problems",
        "  tasks[1].executor ('hello' at children[0]): executor 'command_executor' is disabled "
        "on this server: start the server with --allow-command PROGRAM (or "
        "TASKGROVE_ALLOW_COMMANDS)",
        "  tasks[2].executor ('nap' at children[1]): executor 'sleep_exector' is not "
        "registered; did you mean 'sleep_executor'?",
    ], run.stderr
