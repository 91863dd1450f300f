"""The `taskgrove` command line as a real subprocess (`python -m taskgrove._cli`) against a
real `taskgrove serve` subprocess on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.processes import Finished
from taskgrove import AsyncClient, statuses

if TYPE_CHECKING:
    from taskgrove_server.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI_TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Result(Finished):
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def root_id(self) -> str:
        match = re.search(r"^root (\S+)$", self.stdout, re.MULTILINE)
        assert match, self.explain()
        return match.group(1)


def cli_argv(address: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "taskgrove._cli", "--address", address, *args]


def cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    return {**env, "PYTHONUNBUFFERED": "1"}


def cli(address: str, *args: str) -> Result:
    """Run the CLI to its end (bounded); stdout is a pipe, so not a terminal."""
    done = subprocess.run(
        cli_argv(address, *args),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=cli_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


FAILING = """\
    name: failing
    user_id: cli-fail
    children:
      - name: fine
        executor: sleep_executor
        inputs: {seconds: 0.1}
      - name: boom
        executor: sleep_executor
        inputs: {seconds: 0.1, fail: true, message: disk on fire}
      - name: after boom
        executor: sleep_executor
        dependencies: [boom]
"""


# --------------------------------------------------------------------------- run


def test_run_system_report_prints_the_summary_and_exits_0(server_process: ServerProcess) -> None:
    result = cli(server_process.address, "run", str(EXAMPLES / "system_report.yaml"), "--no-live")
    assert result.returncode == 0, result.explain()
    assert "completed" in result.stdout
    assert "system_report: 4 tasks (4 completed)" in result.stdout
    # --no-live: the summary only, not the tree.
    assert "├──" not in result.stdout
    # The final result (the report), keyed by the file's ids (the names here).
    results = result.stdout.split("results:")[1]
    assert results.splitlines()[1].split()[0] == "report"
    assert '"cpu": {' in results and '"logical_cores":' in results
    tree = cli(server_process.address, "tree", result.root_id, "--json").json()
    assert tree["status"] == statuses.COMPLETED
    children = {child["name"]: child for child in tree["children"]}
    assert set(children) == {"cpu", "memory", "disk", "report"}
    report = children["report"]
    assert set(report["result"]["results"]) == {
        children[n]["id"] for n in ("cpu", "memory", "disk")
    }
    assert children["cpu"]["result"]["logical_cores"] >= 1


def test_run_pipeline_json_summary(server_process: ServerProcess) -> None:
    result = cli(server_process.address, "run", str(EXAMPLES / "pipeline.json"), "--json")
    assert result.returncode == 0, result.explain()
    summary = result.json()
    assert summary["status"] == statuses.COMPLETED
    assert summary["succeeded"] is True
    assert summary["counts"] == {
        "pending": 0,
        "in_progress": 0,
        "completed": 6,
        "failed": 0,
        "cancelled": 0,
    }
    assert summary["failures"] == []
    assert 0 < summary["wall_seconds"] < 10


def test_run_with_a_failing_task_exits_1_and_names_the_reason(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    result = cli(
        server_process.address, "run", str(write(tmp_path, "f.yaml", FAILING)), "--no-live"
    )
    assert result.returncode == 1, result.explain()
    assert "failing: 3 tasks (1 completed, 2 failed)" in result.stdout
    assert "EXECUTOR_ERROR: disk on fire" in result.stdout
    # The dependent's failure names the dependency it failed because of.
    assert re.search(r"DEPENDENCY_FAILED: .*'boom'", result.stdout), result.stdout

    as_json = cli(server_process.address, "run", str(tmp_path / "f.yaml"), "--json")
    assert as_json.returncode == 1, as_json.explain()
    failures = {f["name"]: f for f in as_json.json()["failures"]}
    assert failures["boom"]["reason"] == "EXECUTOR_ERROR"
    assert failures["after boom"]["reason"] == "DEPENDENCY_FAILED"


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        (
            """\
            name: bad
            children:
              - {name: a, executor: no_such_executor}
            """,
            "UNKNOWN_EXECUTOR",
            "no_such_executor",
        ),
        (
            """\
            name: loop
            children:
              - {name: a, executor: sleep_executor, dependencies: [b]}
              - {name: b, executor: sleep_executor, dependencies: [a]}
            """,
            "DEPENDENCY_CYCLE",
            "a -> b",
        ),
        (
            """\
            name: typo
            children:
              - {name: a, executor: sleep_executor, dependancies: []}
            """,
            "INVALID_TREE_FILE",
            "did you mean `dependencies`",
        ),
        ("name: [unclosed\n", "INVALID_TREE_FILE", "invalid YAML"),
    ],
)
def test_run_with_an_invalid_file_exits_2_with_the_reason(
    server_process: ServerProcess, tmp_path: Path, text: str, reason: str, detail: str
) -> None:
    result = cli(server_process.address, "run", str(write(tmp_path, "bad.yaml", text)))
    assert result.returncode == 2, result.explain()
    assert f"error: {reason}: " in result.stderr
    assert detail in result.stderr
    # Nothing was created.
    assert cli(server_process.address, "ls", "--json").json() == []


def test_run_with_the_live_view_on_a_non_terminal(server_process: ServerProcess) -> None:
    result = cli(server_process.address, "run", str(EXAMPLES / "pipeline.json"))
    assert result.returncode == 0, result.explain()
    # The final tree is printed once (no cursor movement), then the summary.
    assert "\x1b[" not in result.stdout
    for name in ("extract orders", "join orders and customers", "validate", "load"):
        assert name in result.stdout
    assert "├──" in result.stdout
    assert "pipeline: 6 tasks (6 completed)" in result.stdout


def test_run_summarises_crowded_groups(server_process: ServerProcess, tmp_path: Path) -> None:
    tree = {
        "name": "crowd",
        "children": [
            {"name": f"job {index}", "executor": "sleep_executor", "inputs": {"seconds": 0}}
            for index in range(300)
        ],
    }
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(tree))
    result = cli(server_process.address, "run", str(path))
    assert result.returncode == 0, result.explain()
    assert "… 280 more (280 completed)" in result.stdout
    # Not a terminal: a plain line per state change, then the final view, kept small.
    lines = result.stdout.splitlines()
    changes = [line for line in lines if re.match(r"^\s*\d+  \d\d:\d\d:\d\d\.\d{3}  ", line)]
    assert len(lines) - len(changes) < 40
    assert lines[: len(changes)] == changes
    assert "crowd: 300 tasks (300 completed)" in result.stdout


# --------------------------------------------------------------------------- watch


async def watch_process(address: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cli_argv(address, "watch", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(),
        cwd=ROOT,
    )


async def finish(process: asyncio.subprocess.Process) -> Result:
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        pytest.fail(f"watch did not exit\n{stdout.decode()}\n{stderr.decode()}")
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def tree_request(user: str, *, fail: bool = False) -> list[dict[str, Any]]:
    return [
        {"id": "root", "name": "watched", "user_id": user},
        {"id": "a", "name": "a", "parent_id": "root", "executor": "sleep_executor",
         "inputs": {"seconds": 0.3}},
        {"id": "b", "name": "b", "parent_id": "root", "executor": "sleep_executor",
         "inputs": {"seconds": 0.1, "fail": fail}, "dependencies": ["a"]},
    ]  # fmt: skip


async def test_watch_json_until_done_prints_every_event_and_exits_0(
    server_process: ServerProcess,
) -> None:
    async with AsyncClient(server_process.address) as client:
        tasks = await client.create_task_tree(tree_request("cli-watch"))
        root_id = tasks["root"].id
        process = await watch_process(
            server_process.address, root_id, "--json", "--until-done", "--timeout", "50"
        )
        await asyncio.sleep(0.5)  # the watcher follows live, not only replays
        await client.execute_task(root_id)
        result = await finish(process)
    assert result.returncode == 0, result.explain()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(set(sequences))
    assert {event["root_id"] for event in events} == {root_id}
    assert [e["type"] for e in events[:3]] == ["created"] * 3
    final = {e["task_id"]: e["status"] for e in events if e["type"] == "status_changed"}
    assert set(final) == {task.id for task in tasks.values()}
    assert set(final.values()) == {statuses.COMPLETED}
    assert events[-1]["task_id"] == root_id
    assert events[-1]["status"] == statuses.COMPLETED
    assert any(e["type"] == "progress" and e["progress"] > 0 for e in events)

    # Replaying a finished tree from a later sequence still ends (the final event is
    # before --after: the task is looked up once the stream is quiet).
    later = cli(
        server_process.address, "watch", root_id, "--until-done", "--after", str(sequences[-1])
    )
    assert later.returncode == 0, later.explain()
    assert later.stdout == ""


async def test_watch_text_of_a_failing_tree_exits_1(server_process: ServerProcess) -> None:
    async with AsyncClient(server_process.address) as client:
        tasks = await client.create_task_tree(tree_request("cli-watch-fail", fail=True))
        await client.execute_task(tasks["root"].id)
        process = await watch_process(server_process.address, tasks["root"].id, "--until-done")
        result = await finish(process)
    assert result.returncode == 1, result.explain()
    lines = result.stdout.splitlines()
    assert re.match(r"^\s*\d+  \d\d:\d\d:\d\d\.\d{3}  watched \S{36}  created pending$", lines[0])
    assert any(
        re.search(r"  b \S{36}  in_progress -> failed .*EXECUTOR_ERROR: failed on request", line)
        for line in lines
    ), result.stdout
    assert "watched" in lines[-1]
    assert "in_progress -> failed" in lines[-1]


async def test_watch_a_task_that_is_not_a_root(server_process: ServerProcess) -> None:
    async with AsyncClient(server_process.address) as client:
        tasks = await client.create_task_tree(tree_request("cli-watch-task"), execute=True)
        child = tasks["a"].id
        process = await watch_process(server_process.address, child, "--json", "--until-done")
        result = await finish(process)
    assert result.returncode == 0, result.explain()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    assert {event["task_id"] for event in events} == {child}
    assert events[-1]["status"] == statuses.COMPLETED


# --------------------------------------------------------------------------- control


def test_run_timeout_then_explain_cancel_and_retry(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    address = server_process.address
    slow = write(
        tmp_path,
        "slow.yaml",
        """\
        name: slow
        children:
          - {name: long, executor: sleep_executor, inputs: {seconds: 60}}
          - {name: next, executor: sleep_executor, dependencies: [long]}
        """,
    )
    run = cli(address, "run", str(slow), "--no-live", "--timeout", "0.5")
    assert run.returncode == 3, run.explain()
    assert "keeps running" in run.stderr
    [root] = cli(address, "ls", "--roots", "--json").json()
    long, following = cli(address, "ls", "--parent", root["id"], "--oldest-first", "--json").json()

    explained = cli(address, "explain", following["id"], "--json")
    assert explained.returncode == 0, explained.explain()
    assert "WAITING_FOR_DEPENDENCIES" in explained.json()["reasons"]
    text = cli(address, "explain", following["id"])
    assert "waiting for:" in text.stdout
    assert long["id"] in text.stdout

    cancelled = cli(address, "cancel", root["id"], "--json")
    assert cancelled.returncode == 0, cancelled.explain()
    assert set(cancelled.json()["cancelled_task_ids"]) >= {long["id"], following["id"]}
    again = cli(address, "cancel", root["id"])
    assert again.stdout.startswith("cancelled 0 tasks"), again.explain()
    assert cli(address, "get", long["id"], "--json").json()["status"] == statuses.CANCELLED

    retried = cli(address, "retry", root["id"], "--json")
    assert retried.returncode == 0, retried.explain()
    assert {long["id"], following["id"]} <= set(retried.json()["retried_task_ids"])
    assert cli(address, "get", long["id"], "--json").json()["status"] != statuses.CANCELLED
    assert cli(address, "cancel", root["id"]).returncode == 0

    # A completed tree cannot be retried: the server's reason, exit 2.
    report = cli(address, "run", str(EXAMPLES / "system_report.yaml"), "--no-live")
    assert report.returncode == 0, report.explain()
    refused = cli(address, "retry", report.root_id)
    assert refused.returncode == 2, refused.explain()
    assert re.match(r"^error: [A-Z_]+: ", refused.stderr), refused.explain()

    # ... but copied: a new tree whose tasks name their originals.
    copied = cli(address, "copy", report.root_id, "--json")
    assert copied.returncode == 0, copied.explain()
    mapping = copied.json()["task_ids"]
    assert report.root_id in mapping and len(mapping) >= 2
    copy_root = cli(address, "get", mapping[report.root_id], "--json").json()
    assert copy_root["original_task_id"] == report.root_id
    assert copy_root["parent_id"] is None
    text = cli(address, "copy", report.root_id, "--execute")
    assert text.stdout.startswith(f"copied {len(mapping)} tasks as "), text.explain()


# --------------------------------------------------------------------------- inspection


def test_get_tree_ls_and_executors(server_process: ServerProcess, tmp_path: Path) -> None:
    address = server_process.address
    run = cli(address, "run", str(write(tmp_path, "f.yaml", FAILING)), "--no-live")
    assert run.returncode == 1, run.explain()
    root_id = run.root_id

    got = cli(address, "get", root_id, "--json")
    assert got.returncode == 0, got.explain()
    root = got.json()
    assert root["id"] == root_id
    assert root["name"] == "failing"
    assert root["status"] == statuses.FAILED
    assert root["is_group"] is True
    assert root["user_id"] == "cli-fail"

    text = cli(address, "get", root_id)
    assert re.search(rf"^id\s+{root_id}$", text.stdout, re.MULTILINE), text.explain()
    assert re.search(r"^status\s+failed$", text.stdout, re.MULTILINE)

    tree = cli(address, "tree", root_id, "--json").json()
    assert [child["name"] for child in tree["children"]] == ["fine", "boom", "after boom"]
    boom = tree["children"][1]
    assert boom["error"]["reason"] == "EXECUTOR_ERROR"
    assert boom["error"]["message"] == "disk on fire"
    shown = cli(address, "tree", root_id)
    assert shown.returncode == 0, shown.explain()
    assert "✖ failing" in shown.stdout
    assert "EXECUTOR_ERROR: disk on fire" in shown.stdout
    assert "1/3" in shown.stdout  # completed of executable tasks
    shallow = cli(address, "tree", root_id, "--depth", "1", "--json").json()
    assert len(shallow["children"]) == 3

    boom_get = cli(address, "get", boom["id"])
    assert "EXECUTOR_ERROR: disk on fire" in boom_get.stdout

    everything = cli(address, "ls", "--user", "cli-fail", "--json").json()
    assert len(everything) == 4
    roots = cli(address, "ls", "--roots", "--json").json()
    assert [task["id"] for task in roots] == [root_id]
    failed = cli(address, "ls", "--status", "failed", "--user", "cli-fail", "--json").json()
    assert {task["name"] for task in failed} == {"failing", "boom", "after boom"}
    both = cli(address, "ls", "--status", "completed", "--status", "failed", "--json").json()
    assert len(both) == 4
    limited = cli(address, "ls", "--limit", "2")
    assert limited.returncode == 0, limited.explain()
    lines = limited.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "STATUS", "EXECUTOR", "PROGRESS", "PRIORITY", "CREATED",
    ]  # fmt: skip
    assert len(lines) == 3
    assert "--limit" in limited.stderr
    assert cli(address, "ls", "--user", "nobody", "--json").json() == []
    named = cli(address, "ls", "--name", "BOOM", "--user", "cli-fail", "--json").json()
    assert {task["name"] for task in named} == {"boom", "after boom"}

    executors = cli(address, "executors", "--json")
    assert executors.returncode == 0, executors.explain()
    by_id = {executor["id"]: executor for executor in executors.json()}
    assert {"system_info_executor", "aggregate_results_executor", "sleep_executor"} <= set(by_id)
    assert "seconds" in by_id["sleep_executor"]["input_schema"]["properties"]
    table = cli(address, "executors")
    assert "sleep_executor" in table.stdout


CHAIN = 1000


def parent_chain(length: int) -> list[dict[str, Any]]:
    """A root and `length - 1` tasks below it, each the only child of the one before."""
    specs: list[dict[str, Any]] = [{"id": "t0", "name": "t0", "user_id": "cli-deep"}]
    specs += [{"id": f"t{i}", "name": f"t{i}", "parent_id": f"t{i - 1}"} for i in range(1, length)]
    specs[-1]["executor"] = "sleep_executor"
    return specs


def loads_deep(text: str) -> Any:
    """`json.loads` of deeply nested text (Python 3.11's parser counts every level of
    nesting against the recursion limit; raised here, in the test, not in the CLI)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * CHAIN))
    try:
        return json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


async def test_tree_of_a_parent_chain_1000_deep(server_process: ServerProcess) -> None:
    async with AsyncClient(server_process.address) as client:
        created = await client.create_task_tree(parent_chain(CHAIN), basic=True)
    ids = [created[f"t{i}"].id for i in range(CHAIN)]

    shown = cli(server_process.address, "tree", ids[0])
    assert shown.returncode == 0, shown.explain()
    assert "Traceback" not in shown.stderr
    # Rich indents every level: the view stops where the width (120 on a pipe) runs out
    # and says how many levels are left.
    names = re.findall(r"\bt(\d+) [0-9a-f]{8}\b", shown.stdout)
    assert names == [str(i) for i in range(len(names))], shown.stdout
    marker = re.search(r"… (\d+) more levels \(use --depth / --json\)", shown.stdout)
    assert marker, shown.explain()
    assert len(names) - 1 + int(marker.group(1)) == CHAIN - 1
    assert max(len(line) for line in shown.stdout.splitlines()) <= 120

    as_json = cli(server_process.address, "tree", ids[0], "--json")
    assert as_json.returncode == 0, as_json.explain()
    node = loads_deep(as_json.stdout)
    walked = []
    while True:
        walked.append(node)
        if not node["children"]:
            break
        [node] = node["children"]
    assert [task["id"] for task in walked] == ids
    assert [task["parent_id"] for task in walked] == [None, *ids[:-1]]
    assert [task["is_group"] for task in walked] == [True] * (CHAIN - 1) + [False]


def test_errors_print_the_reason_and_exit_2(server_process: ServerProcess) -> None:
    missing = cli(server_process.address, "get", "no-such-task")
    assert missing.returncode == 2, missing.explain()
    assert missing.stderr.startswith("error: TASK_NOT_FOUND: ")
    assert missing.stdout == ""
    watch_missing = cli(server_process.address, "watch", "no-such-task", "--until-done")
    assert watch_missing.returncode == 2, watch_missing.explain()
    assert "TASK_NOT_FOUND" in watch_missing.stderr


def test_an_unreachable_server_is_a_clear_error() -> None:
    result = cli("127.0.0.1:1", "ls")
    assert result.returncode == 2, result.explain()
    assert "cannot reach the taskgrove server at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


async def test_logs_prints_a_tasks_lines_as_text_and_json(tmp_path: Path) -> None:
    from taskgrove_server.testing import ServerProcess, sqlite_url

    with ServerProcess(
        sqlite_url(tmp_path / "logs.db"), extra_env={"TASKGROVE_ALLOW_COMMANDS": "sh"}
    ) as served:
        async with AsyncClient(served.address) as client:
            task = await client.create_task(
                name="cmd",
                executor="command_executor",
                inputs={"argv": ["sh", "-c", "echo hello; sleep 0.1; echo oops >&2; exit 3"]},
            )
            await client.execute_task(task.id)
            async with asyncio.timeout(CLI_TIMEOUT):
                await client.wait(task.id)
        text = cli(served.address, "logs", task.id)
        assert text.returncode == 0, text.explain()
        assert text.stdout.splitlines() == [
            "hello",
            "stderr: oops",
            "COMMAND_FAILED: sh exited with 3",
        ]
        followed = cli(served.address, "logs", task.id, "--follow")  # it ended: no wait
        assert followed.returncode == 0, followed.explain()
        assert followed.stdout.splitlines() == ["--- attempt 1 ---", *text.stdout.splitlines()]
        lines = [
            json.loads(line)
            for line in cli(served.address, "logs", task.id, "--json").stdout.splitlines()
        ]
        assert [(line["attempt"], line["sequence"], line["text"]) for line in lines] == [
            (1, 1, "hello"),
            (1, 2, "stderr: oops"),
            (1, 3, "COMMAND_FAILED: sh exited with 3"),
        ]
        none = cli(served.address, "logs", task.id, "--attempt", "2")
        assert none.returncode == 0 and none.stdout == "", none.explain()
        assert "no log lines" in none.stderr


# --------------------------------------------------------------------------- ids

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def test_every_id_shown_is_accepted_by_the_next_command(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """The human views print whole ids (no shortened form that `get` would refuse)."""
    address = server_process.address
    run = cli(address, "run", str(write(tmp_path, "f.yaml", FAILING)))
    assert run.returncode == 1, run.explain()
    tree = cli(address, "tree", run.root_id)
    listed = cli(address, "ls", "--user", "cli-fail")
    watched = cli(address, "watch", run.root_id, "--until-done")
    stored = {task["id"] for task in cli(address, "ls", "--json").json()}
    for shown in (run, tree, listed, watched):
        ids = set(UUID.findall(shown.stdout))
        # Every task of the tree is shown (the summary lists the failed ones too).
        assert ids == stored, shown.explain()
    boom = next(line for line in tree.stdout.splitlines() if "boom" in line)
    boom_id = UUID.findall(boom)[0]
    for command in ("get", "explain", "logs", "cancel", "tree"):
        for task_id in sorted(stored):
            used = cli(address, command, task_id)
            assert used.returncode == 0, used.explain()
    assert "disk on fire" in cli(address, "get", boom_id).stdout


def test_ls_lists_newest_first_and_says_when_nothing_matches(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    address = server_process.address
    path = write(tmp_path, "f.yaml", FAILING)
    first, second = (cli(address, "run", str(path), "--no-live").root_id for _ in range(2))
    listed = cli(address, "ls", "--roots")
    assert listed.returncode == 0, listed.explain()
    rows = listed.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [second, first]
    oldest = cli(address, "ls", "--roots", "--oldest-first", "--json").json()
    assert [task["id"] for task in oldest] == [first, second]
    newest = cli(address, "ls", "--limit", "1")
    assert newest.stdout.splitlines()[1].split()[0] != first
    assert "showing the newest 1" in newest.stderr
    # `running` as the views call it; nothing runs now.
    running = cli(address, "ls", "--status", "running")
    assert running.returncode == 0, running.explain()
    assert running.stdout == ""
    assert "no tasks match" in running.stderr
    assert cli(address, "ls", "--status", "running", "--json").json() == []
    assert cli(address, "ls", "--status", "done").returncode == 2


MIXED = """\
    name: mixed
    user_id: cli-mixed
    children:
      - id: eu
        name: fetch EU
        executor: sleep_executor
        inputs: {seconds: 0.05, result: {rows: 3}}
      - id: sh
        name: shell
        executor: command_executor
        inputs: {argv: [sh, -c, "echo out; for n in $(seq 7); do echo err $n >&2; done; exit 3"]}
      - id: merge
        name: merge
        executor: aggregate_results_executor
        dependencies: [eu]
      - name: after shell
        executor: sleep_executor
        dependencies: [sh]
"""


def test_run_shows_results_the_files_ids_and_why_a_command_failed(tmp_path: Path) -> None:
    from taskgrove_server.testing import ServerProcess, sqlite_url

    path = write(tmp_path, "mixed.yaml", MIXED)
    with ServerProcess(
        sqlite_url(tmp_path / "mixed.db"), extra_env={"TASKGROVE_ALLOW_COMMANDS": "sh"}
    ) as served:
        text = cli(served.address, "run", str(path), "--no-live")
        assert text.returncode == 1, text.explain()
        rows = text.stdout.split("ids:")[1].split("results:")[0].splitlines()[1:]
        ids = dict(line.strip().rsplit("  ", 1) for line in rows)
        assert {ref.strip(): task_id for ref, task_id in ids.items()}.keys() == {
            "mixed", "eu", "sh", "merge", "after shell",
        }  # fmt: skip
        # merge is the final result (nothing depends on it), its key the file's id.
        results = text.stdout.split("results:")[1].split("problems")[0]
        assert "merge [merge]" not in results and results.splitlines()[1].split()[0] == "merge"
        assert '"eu": {' in results and '"rows": 3' in results
        # The command's failure with the end of its stderr; its dependent names it.
        problems = text.stdout.split("problems")[1]
        assert "COMMAND_FAILED: sh exited with 3" in problems
        stderr = [line.strip() for line in problems.splitlines() if "stderr:" in line]
        assert stderr == [f"stderr: err {n}" for n in range(3, 8)]
        assert "DEPENDENCY_FAILED: required dependency 'shell' failed" in problems

        as_json = cli(served.address, "run", str(path), "--json")
        assert as_json.returncode == 1, as_json.explain()
        summary = as_json.json()
        assert set(summary["task_ids"]) == {"mixed", "eu", "sh", "merge", "after shell"}
        merge_id = summary["task_ids"]["merge"]
        assert summary["results"]["eu"]["result"] == {"rows": 3}
        assert summary["results"]["merge"]["results"] == {
            summary["task_ids"]["eu"]: summary["results"]["eu"]
        }
        failure = {f["ref"]: f for f in summary["failures"]}["sh"]
        assert failure["details"]["stdout"] == "out\n"
        assert failure["details"]["stderr"].endswith("err 7\n")
        for task_id in summary["task_ids"].values():
            assert cli(served.address, "get", task_id).returncode == 0
        got = cli(served.address, "get", merge_id, "--json").json()
        assert got["name"] == "merge"
        # `get` names the dependencies, and shows a command's output ends as lines.
        after = cli(served.address, "get", summary["task_ids"]["after shell"]).stdout
        sh_id = summary["task_ids"]["sh"]
        assert re.search(rf"^dependencies\s+{sh_id} 'shell'$", after, re.MULTILINE), after
        assert f"required dependency {sh_id} ('shell') failed" in after
        shell = cli(served.address, "get", sh_id).stdout
        assert re.search(r"^stdout\s+out$", shell, re.MULTILINE), shell
        assert re.search(r"^stderr\s+err 1$", shell, re.MULTILINE), shell
        assert re.search(r"^\s+err 7$", shell, re.MULTILINE), shell
        assert re.search(r"^attempt\s+1 of 1$", shell, re.MULTILINE), shell


# --------------------------------------------------------------------------- following


def test_execute_retry_copy_and_watch_tree_follow_like_run(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    address = server_process.address
    run = cli(address, "run", str(write(tmp_path, "f.yaml", FAILING)), "--json")
    assert run.returncode == 1, run.explain()
    ids = run.json()["task_ids"]
    root_id = ids["failing"]

    # retry --follow: waits for the new attempt, which fails again (exit 1 as run).
    retried = cli(address, "retry", ids["boom"], "--follow", "--json")
    assert retried.returncode == 1, retried.explain()
    summary = retried.json()
    assert set(summary["retried_task_ids"]) == {ids["boom"], ids["after boom"]}
    assert summary["root_id"] == ids["boom"]
    assert summary["failures"][0]["message"] == "disk on fire"
    assert cli(address, "get", ids["boom"], "--json").json()["attempt"] == 2
    text = cli(address, "retry", root_id, "--follow", "--no-live")
    assert text.returncode == 1, text.explain()
    assert "retried 2 tasks" in text.stderr
    assert "failing: 3 tasks (1 completed, 2 failed)" in text.stdout
    # Nothing to retry: the server's refusal, exit 2, no view.
    refused = cli(address, "retry", ids["fine"], "--follow")
    assert refused.returncode == 2, refused.explain()
    assert "TASK_NOT_RETRYABLE" in refused.stderr and refused.stdout == ""

    # copy --follow runs the copy (implies --execute) and follows it.
    copied = cli(address, "copy", root_id, "--follow", "--json")
    assert copied.returncode == 1, copied.explain()
    assert copied.json()["root_id"] != root_id
    assert copied.json()["total"] == 3

    # A copy made without --execute: `execute` runs it with the live view. Not on a
    # terminal: a plain line per state change, then the final tree and the summary.
    pending = cli(address, "copy", root_id, "--json").json()["task_ids"][root_id]
    assert cli(address, "get", pending, "--json").json()["status"] == statuses.PENDING
    boom_copy = cli(address, "tree", pending, "--json").json()["children"][1]["id"]
    assert f"next: taskgrove execute {boom_copy}" in cli(address, "explain", boom_copy).stdout
    explained = cli(address, "explain", ids["boom"]).stdout
    assert "error: EXECUTOR_ERROR: disk on fire" in explained
    assert f"next: taskgrove retry {ids['boom']} --follow" in explained
    executed = cli(address, "execute", pending)
    assert executed.returncode == 1, executed.explain()
    lines = executed.stdout.splitlines()
    changes = [line for line in lines if " -> " in line]
    assert any(re.search(rf"boom {UUID.pattern}  \S+ -> failed", line) for line in changes)
    assert any(re.search(rf"fine {UUID.pattern}  \S+ -> completed", line) for line in changes)
    assert any("DEPENDENCY_FAILED: required dependency 'boom' failed" in line for line in changes)
    assert lines.index(changes[-1]) < next(i for i, line in enumerate(lines) if "├──" in line)
    assert "\x1b[" not in executed.stdout
    assert f"root {pending}" in executed.stdout

    # watch --tree re-attaches the view; a finished tree ends at once with run's codes.
    watched = cli(address, "watch", root_id, "--tree")
    assert watched.returncode == 1, watched.explain()
    assert "├──" in watched.stdout and "EXECUTOR_ERROR: disk on fire" in watched.stdout
    report = cli(address, "run", str(EXAMPLES / "system_report.yaml"), "--no-live").root_id
    assert cli(address, "watch", report, "--tree", "--no-live").returncode == 0
    fresh = cli(address, "copy", report, "--json").json()["task_ids"][report]
    done = cli(address, "execute", fresh, "--no-live")
    assert done.returncode == 0, done.explain()
    assert "system_report: 4 tasks (4 completed)" in done.stdout
    assert "results:" in done.stdout and '"cpu": {' in done.stdout


async def test_watch_tree_waits_for_a_running_tree_and_ends_with_it(
    server_process: ServerProcess,
) -> None:
    address = server_process.address
    async with AsyncClient(address) as client:
        tasks = await client.create_task_tree(
            [
                {"id": "root", "name": "slow", "user_id": "cli-attach"},
                {
                    "id": "a",
                    "name": "a",
                    "parent_id": "root",
                    "executor": "sleep_executor",
                    "inputs": {"seconds": 60},
                },
            ]
        )
        root_id = tasks["root"].id
        await client.execute_task(root_id)
        # Running: the view waits (here until its --timeout, exit 3 as run's).
        waiting = await finish(await watch_process(address, root_id, "--tree", "--timeout", "1"))
        assert waiting.returncode == 3, waiting.explain()
        assert f"taskgrove watch {root_id} --tree" in waiting.stderr
        # Attached while it runs, it ends when the tree does (cancelled: exit 1).
        process = await watch_process(address, tasks["a"].id, "--tree")
        await client.cancel_task(root_id)
        ended = await finish(process)
    assert ended.returncode == 1, ended.explain()
    assert "a: 1 tasks (1 cancelled)" in ended.stdout


# --------------------------------------------------------------------------- reconnecting


async def read_until(
    stream: asyncio.StreamReader, needle: str, seen: list[str], limit_s: float = 30.0
) -> str:
    """Read lines (kept in `seen`) until one contains `needle`; that line."""
    async with asyncio.timeout(limit_s):
        while True:
            raw = await stream.readline()
            assert raw, f"the output ended before {needle!r}:\n" + "".join(seen)
            line = raw.decode()
            seen.append(line)
            if needle in line:
                return line


@pytest.mark.parametrize("mode", ["plain", "no-live"])
async def test_run_says_reconnecting_while_the_server_is_away_and_finishes(
    db_url: str, tmp_path: Path, mode: str
) -> None:
    from taskgrove_server.testing import ServerProcess

    tree = write(
        tmp_path,
        "chain.yaml",
        """\
        name: chain
        user_id: cli-reconnect
        children:
          - name: warmup
            executor: sleep_executor
            inputs: {seconds: 1}
            max_attempts: 3
          - name: first
            executor: sleep_executor
            inputs: {seconds: 2}
            max_attempts: 3
            dependencies: [warmup]
          - name: second
            executor: sleep_executor
            inputs: {seconds: 0.2}
            max_attempts: 3
            dependencies: [first]
        """,
    )
    server = ServerProcess(db_url)
    try:
        address = server.start()
        extra = ["--no-live"] if mode == "no-live" else []
        process = await asyncio.create_subprocess_exec(
            *cli_argv(address, "run", str(tree), *extra),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=cli_env(),
            cwd=ROOT,
        )
        assert process.stdout is not None and process.stderr is not None
        seen: list[str] = []
        if mode == "plain":  # stdout is a pipe: one line per state change
            while "first" not in await read_until(process.stdout, "-> in_progress", seen):
                pass
        else:
            await asyncio.sleep(2.0)
        server.stop(signal.SIGKILL)  # by its PID
        notices = process.stdout if mode == "plain" else process.stderr
        notice = await read_until(notices, "server unreachable, reconnecting (", seen)
        assert re.search(r"server unreachable, reconnecting \(\d+\)…", notice)
        server.start(port=int(address.rsplit(":", 1)[1]))
        await read_until(notices, "server reachable again", seen)
        done = await finish(process)
    finally:
        server.stop(signal.SIGKILL)
    output = "".join(seen) + done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "chain: 3 tasks (3 completed)" in done.stdout, output
    assert output.count("server unreachable") == 1, output  # one line per outage
    if mode == "plain":  # the outage came while `first` ran
        assert re.search(r"first \S+ .*-> completed", output.split("server unreachable")[1])


# --------------------------------------------------------------------------- attempts


async def test_get_shows_each_attempt_failing_twice_then_succeeding(
    db_url: str, command_dir: Path
) -> None:
    from support.waiting import until_task
    from taskgrove_server.testing import ServerProcess

    runs = command_dir / "runs.txt"
    runs.touch()
    runs.chmod(0o666)
    # Fails on its first two runs, succeeds on the third.
    script = f'n=$(wc -l < {runs}); echo x >> {runs}; [ "$n" -ge 2 ] || exit 3'
    server = ServerProcess(db_url, extra_env={"TASKGROVE_ALLOW_COMMANDS": "sh"})
    try:
        address = server.start()
        async with AsyncClient(address) as client:
            task = await client.create_task(
                name="flaky",
                executor="command_executor",
                inputs={"argv": ["sh", "-c", script]},
                max_attempts=3,
                retry_backoff=0.05,
            )
            await client.execute_task(task.id)
            done = await until_task(client, task.id, lambda t: t.is_finished, poll_s=0.02)
            assert done.status == statuses.COMPLETED and done.attempt == 3
        shown = cli(address, "get", task.id)
        data = cli(address, "get", task.id, "--json").json()
    finally:
        server.stop()
    assert shown.returncode == 0, shown.explain()
    lines = [line for line in shown.stdout.splitlines() if " #" in line]
    assert len(lines) == 3, shown.stdout
    assert lines[0].startswith("attempts") and "#1 retried" in lines[0]
    assert "COMMAND_FAILED" in lines[0], shown.stdout
    assert "#2 retried" in lines[1] and "COMMAND_FAILED" in lines[1]
    assert "#3 completed" in lines[2] and "FAILED" not in lines[2]
    assert "history pruned" not in shown.stdout
    attempts = data["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["outcome"] for a in attempts] == ["retried", "retried", "completed"]
    assert [a["error"] and a["error"]["reason"] for a in attempts] == [
        "COMMAND_FAILED",
        "COMMAND_FAILED",
        None,
    ]
    assert all(a["start_time"] <= a["end_time"] for a in attempts)
    assert attempts[0]["end_time"] <= attempts[1]["start_time"]
    assert data["history_pruned"] is False
