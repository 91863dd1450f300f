"""Replicas on one PostgreSQL database: the same work on 1 replica and on 3.

Every run makes a fresh database and starts fresh `taskgrove serve` processes on it
(127.0.0.1, port 0), then times, from the first CreateTaskTree sent to the last root seen
completed (GetTask polls of each root, 20 ms apart, on the replica its request went to):

- `3 trees / 1 replica`: the N leaves as 3 trees (N/3 each: 3,334/3,333/3,333 for
  10,000), all three `CreateTaskTree(execute=True)` sent at once to the one replica;
- `3 trees / 3 replicas`: the same 3 trees, one per replica, sent at the same time;
- `1 tree / 1 replica`: the whole N as one tree, created and executed on it;
- `1 tree / 3 replicas, A -> B`: the whole N as one tree, `CreateTaskTree(execute=False)`
  on replica A (which then holds it), `ExecuteTask` on replica B (forwarded to A as a
  command row), polled on B.

Around each run the database's counters are read: `pg_stat_database` (xact_commit +
xact_rollback: transactions) and `pg_stat_user_tables` (n_tup_ins/upd/del: rows written),
before the work (servers started and idle for `STATS_SETTLE_S`, so their start-up is
flushed to the statistics) and after it (servers stopped, so every backend has flushed).
`pg_stat_statements` is not loadable here (no `shared_preload_libraries`, no superuser),
so statements are counted in the servers themselves: `bench/sqlcount/sitecustomize.py`
(SQLAlchemy cursor executions, and BEGIN/COMMIT), printed by each server on SIGUSR2 (taken
with the 'before' counters) and at exit.

Also: PostgreSQL's own commit rate on this machine, single-row INSERT autocommit
transactions in a loop over 1 and over 3 connections (`commit_rate`).

    .venv/bin/python bench/run.py --replicas-only [--replica-flat-tasks 10000] [--replica-repeats 3]
    TASKGROVE_BENCH_SQL_TEXTS=1 .venv/bin/python bench/run.py --replicas-only  # + top statements
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
from connection import client_config
from harness import ERROR, FAILED, GC_STATS_ENV, OK, TIMEOUT, num, rpc_error_text, tree_request
from pgdb import PgServer
from sampler import MB, RssSampler
from sqlalchemy.engine import make_url
from taskgrove import AsyncClient, TaskgroveError
from taskgrove.v1 import task_service_pb2
from taskgrove_server.testing import ServerProcess
from trees import ROOT_ID, SHAPES, leaf_count

REPLICA_FLAT_TASKS = 10_000
REPLICA_CHAIN_TASKS = 1_000
REPLICA_REPEATS = 3
REPLICA_COUNT = 3
SPREAD_TREES = 3
STATS_SETTLE_S = 2.5
"""Idle time after the servers start and before the 'before' counters are read: a backend
flushes its statistics at most once a second (PostgreSQL 15), and at exit."""
COMMIT_RATE_SECONDS = 3.0
COMMIT_RATE_MAX = 200_000
"""Upper bound on the commit-rate loop's transactions per connection (a bound besides time)."""
COMMIT_RATE_CONNECTIONS = (1, 3)
SQL_COUNT_ENV = "TASKGROVE_BENCH_SQL_COUNT"
SQL_COUNT_DIR = Path(__file__).resolve().parents[1] / "sqlcount"
SQL_LINE = "taskgrove bench sql:"
SQL_TEXT_LINE = "taskgrove bench sql text:"
SQL_TEXTS_ENV = "TASKGROVE_BENCH_SQL_TEXTS"
"""Set to 1: the servers list their most frequent statements at exit (bench/sqlcount), and
each run keeps them (`sql_texts`, summed over the replicas)."""
TOP_STATEMENTS = 5
"""Statements kept per shape and layout in the summary (5: equal counts tie often)."""

SPREAD_1 = "3 trees / 1 replica"
SPREAD_3 = "3 trees / 3 replicas"
ONE_1 = "1 tree / 1 replica"
ONE_ROUTED = "1 tree / 3 replicas, A -> B"
LAYOUTS = (SPREAD_1, SPREAD_3, ONE_1, ONE_ROUTED)
REPLICAS_OF = {SPREAD_1: 1, SPREAD_3: REPLICA_COUNT, ONE_1: 1, ONE_ROUTED: REPLICA_COUNT}


@dataclass(slots=True)
class ReplicaRun:
    shape: str
    tasks: int
    layout: str
    replicas: int
    trees: list[int]
    """Leaves per tree."""
    repeat: int
    outcome: str = ERROR
    seconds: float | None = None
    """First CreateTaskTree sent -> the last root seen completed."""
    tasks_per_s: float | None = None
    create_seconds: float | None = None
    """First CreateTaskTree sent -> its last reply (ExecuteTask included for A -> B)."""
    transactions: int | None = None
    """pg_stat_database xact_commit + xact_rollback, after - before."""
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    sql: dict[str, int] = field(default_factory=dict)
    """The servers' own counts (bench/sqlcount), summed over the replicas."""
    sql_texts: dict[str, int] = field(default_factory=dict)
    """With TASKGROVE_BENCH_SQL_TEXTS=1: each replica's most frequent statements (first 160
    characters, whitespace folded) from the 'before' counters to its exit, summed over the
    replicas (a statement outside one replica's list counts 0 there)."""
    server_cpu_seconds: float = 0.0
    """CPU (user + system) of all replicas, from before the first create to the end."""
    replica_cpu_seconds: list[float] = field(default_factory=list)
    postgres_cpu_seconds: float | None = None
    """CPU of the PostgreSQL backends connected to the run's database over the same time
    (not the WAL writer, checkpointer or autovacuum)."""
    peak_rss_mb: float = 0.0
    """The largest replica's peak RSS."""
    polls: int = 0
    load: list[float] = field(default_factory=list)
    """The machine's 1-minute load average just before the first create and at the end
    (the machine is shared: a high one marks a run to doubt)."""
    detail: str = ""

    @property
    def rows_written(self) -> int | None:
        if self.rows_inserted is None or self.rows_updated is None or self.rows_deleted is None:
            return None
        return self.rows_inserted + self.rows_updated + self.rows_deleted

    @property
    def round_trips(self) -> int | None:
        """An estimate from the servers' counts: one round trip per pool checkout (its
        pre-ping), BEGIN, statement (an executemany is pipelined: one), COMMIT and
        ROLLBACK. Not counted: a statement's first PREPARE on a connection (one more), the
        LISTEN connection; a BEGIN or ROLLBACK of a transaction that ran nothing is
        counted though never sent."""
        if not self.sql:
            return None
        keys = ("checkouts", "begin", "statements", "commit", "rollback")
        return sum(self.sql.get(key, 0) for key in keys)

    def per_task(self, value: int | None) -> float | None:
        return None if value is None else value / self.tasks


def split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal sizes, the larger first (10,000 -> 3,334/3,333/3,333)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


# ---------------------------------------------------------------------------- statistics


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _read_counters(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        database = await connection.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        tables = await connection.fetchrow(
            "SELECT coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd, "
            "coalesce(sum(n_tup_del), 0) AS del FROM pg_stat_user_tables"
        )
    finally:
        await connection.close()
    assert database is not None and tables is not None
    return {
        "transactions": int(database["xact_commit"]) + int(database["xact_rollback"]),
        "rows_inserted": int(tables["ins"]),
        "rows_updated": int(tables["upd"]),
        "rows_deleted": int(tables["del"]),
    }


def read_counters(url: str) -> dict[str, int]:
    return asyncio.run(asyncio.wait_for(_read_counters(url), 30))


def backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds (user + system) of each PostgreSQL backend connected to `database`
    (its process title names the database)."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            title = " ".join(process.info["cmdline"] or ())
            if process.info["name"] == "postgres" and f" {database} " in f"{title} ":
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        except psutil.Error:
            continue
    return found


def sql_counts(server: ServerProcess, at: str) -> dict[str, int]:
    """The last `taskgrove bench sql: at=AT ...` line the server printed, or nothing."""
    for line in reversed(server.log_tail(50).splitlines()):
        if SQL_LINE in line:
            pairs = dict(item.split("=", 1) for item in line.split(SQL_LINE, 1)[1].split())
            if pairs.pop("at", "") == at:
                return {key: int(value) for key, value in pairs.items()}
    return {}


def sql_texts(server: ServerProcess) -> dict[str, int]:
    """The `taskgrove bench sql text: COUNT TEXT` lines after the server's exit counts."""
    texts: dict[str, int] = {}
    after_exit = False
    for line in server.log_tail(200).splitlines():
        if SQL_LINE in line:
            after_exit = " at=exit " in f"{line} "
            texts.clear()
        elif after_exit and SQL_TEXT_LINE in line:
            count, _, text = line.split(SQL_TEXT_LINE, 1)[1].strip().partition(" ")
            texts[text] = texts.get(text, 0) + int(count)
    return texts


def sql_counts_now(server: ServerProcess, timeout_s: float = 5.0) -> dict[str, int]:
    """SIGUSR2 makes the server print its counts (`at=usr2`); waits (bounded) for them."""
    os.kill(server.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if counts := sql_counts(server, "usr2"):
            return counts
        time.sleep(0.02)
    return {}


# ---------------------------------------------------------------------------- the servers


def _server_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        GC_STATS_ENV: "1",
        SQL_COUNT_ENV: "1",
        # After an exported revision's paths: only sitecustomize is taken from here.
        "PYTHONPATH": os.pathsep.join(part for part in (path, str(SQL_COUNT_DIR)) if part),
    }


@contextlib.contextmanager
def replicas(url: str, count: int, directory: Path) -> Iterator[list[ServerProcess]]:
    """`count` servers on one database, started one after another, stopped by PID (each
    by its own ServerProcess) whatever happens."""
    servers: list[ServerProcess] = []
    with contextlib.ExitStack() as stack:
        for index in range(count):
            server = ServerProcess(
                url, extra_env=_server_env(), log_path=directory / f"replica-{index}.log"
            )
            stack.enter_context(server)
            servers.append(server)
        yield servers


# ---------------------------------------------------------------------------- one run


async def _poll_done(client: AsyncClient, root_id: str, interval_s: float, run: ReplicaRun) -> str:
    """GetTask on the root every `interval_s` until it is finished: its status."""
    while True:
        task = await client.get_task(root_id)
        run.polls += 1
        if task.is_finished:
            return task.status
        await asyncio.sleep(interval_s)


async def _one_tree(
    create_on: AsyncClient,
    execute_on: AsyncClient | None,
    request: Any,
    interval_s: float,
    run: ReplicaRun,
) -> tuple[float, float, str]:
    """Create (and, with `execute_on`, execute there) one tree; poll it on the replica that
    executed it: (create done, root seen finished, root status), perf_counter times."""
    reply = await create_on.stub.CreateTaskTree(request)
    root_id = reply.task_ids[ROOT_ID]
    poll_on = create_on
    if execute_on is not None:
        await execute_on.stub.ExecuteTask(task_service_pb2.ExecuteTaskRequest(id=root_id))
        poll_on = execute_on
    created = time.perf_counter()
    status = await _poll_done(poll_on, root_id, interval_s, run)
    return created, time.perf_counter(), status


async def measure(
    addresses: Sequence[str], layout: str, requests: Sequence[Any], run: ReplicaRun, args: Any
) -> None:
    limit_s: float = args.timeout
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                AsyncClient(config=client_config(address, timeout=limit_s))
            )
            for address in addresses
        ]
        if layout == ONE_ROUTED:
            plans = [(clients[0], clients[1], requests[0])]
        else:  # spread over the replicas (one replica: all on it), executed on creation
            plans = [
                (clients[index % len(clients)], None, request)
                for index, request in enumerate(requests)
            ]
        try:
            async with asyncio.timeout(limit_s):
                start = time.perf_counter()
                ends = await asyncio.gather(
                    *(
                        _one_tree(create_on, execute_on, request, args.poll_interval, run)
                        for create_on, execute_on, request in plans
                    )
                )
            run.create_seconds = max(created for created, _, _ in ends) - start
            run.seconds = max(done for _, done, _ in ends) - start
            unfinished = [status for _, _, status in ends if status != "completed"]
            if unfinished:
                run.outcome, run.detail = FAILED, f"roots ended {unfinished}"
            else:
                run.outcome = OK
                run.tasks_per_s = run.tasks / run.seconds
        except TimeoutError:
            run.outcome, run.detail = TIMEOUT, f"not done after {limit_s:g} s"
        except (grpc.aio.AioRpcError, TaskgroveError, RuntimeError) as error:
            run.outcome, run.detail = ERROR, rpc_error_text(error)


def run_replicas_once(
    pg: PgServer, shape: str, total: int, layout: str, repeat: int, workdir: Path, args: Any
) -> ReplicaRun:
    sizes = [total] if layout in (ONE_1, ONE_ROUTED) else split(total, SPREAD_TREES)
    trees = [SHAPES[shape](size) for size in sizes]
    execute = layout != ONE_ROUTED
    requests = [tree_request(tasks, execute=execute) for tasks in trees]  # before the clock
    count = REPLICAS_OF[layout]
    run = ReplicaRun(shape, sum(leaf_count(tasks) for tasks in trees), layout, count, sizes, repeat)
    tag = f"replicas-{shape}-{total}-{count}r-{len(sizes)}t-{repeat}"
    directory = workdir / tag
    directory.mkdir(parents=True, exist_ok=True)
    name, url = pg.create(tag)
    servers: list[ServerProcess] = []
    try:
        before: dict[str, int] = {}
        with replicas(url, count, directory) as servers:
            time.sleep(STATS_SETTLE_S)
            before = read_counters(url)
            sql_before = [sql_counts_now(server) for server in servers]
            with contextlib.ExitStack() as samplers:
                sampled = [samplers.enter_context(RssSampler(s.pid)) for s in servers]
                pg_before = backend_cpu(name)
                run.load = [os.getloadavg()[0]]
                asyncio.run(measure([s.address for s in servers], layout, requests, run, args))
                run.load.append(os.getloadavg()[0])
                pg_after = backend_cpu(name)
            run.postgres_cpu_seconds = sum(
                cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items()
            )
            if run.outcome != OK:
                tails = "\n".join(s.log_tail() for s in servers)
                run.detail += f"\nserver log tails:\n{tails}"
        # Every server has stopped: its backends exited and flushed their statistics.
        after = read_counters(url)
        run.transactions = after["transactions"] - before["transactions"]
        run.rows_inserted = after["rows_inserted"] - before["rows_inserted"]
        run.rows_updated = after["rows_updated"] - before["rows_updated"]
        run.rows_deleted = after["rows_deleted"] - before["rows_deleted"]
        run.replica_cpu_seconds = [sample.cpu_seconds for sample in sampled]
        run.server_cpu_seconds = sum(run.replica_cpu_seconds)
        run.peak_rss_mb = max(sample.peak_rss for sample in sampled) / MB
        totals: dict[str, int] = {}
        for server, start in zip(servers, sql_before, strict=True):
            end = sql_counts(server, "exit")
            if not start or not end:
                totals = {}
                break
            for key, value in end.items():
                totals[key] = totals.get(key, 0) + value - start.get(key, 0)
        run.sql = totals
        for server in servers:
            for text, count in sql_texts(server).items():
                run.sql_texts[text] = run.sql_texts.get(text, 0) + count
    except (RuntimeError, OSError, asyncpg.PostgresError) as error:
        run.outcome, run.detail = ERROR, f"{type(error).__name__}: {error}"
    finally:
        pg.drop(name)
    return run


def run_replicas(
    pg: PgServer, workdir: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> list[ReplicaRun]:
    """Every shape and layout, `args.replica_repeats` interleaved rounds."""
    runs: list[ReplicaRun] = []
    work = [("flat", args.replica_flat_tasks), ("chain", args.replica_chain_tasks)]
    for repeat in range(1, args.replica_repeats + 1):
        for shape, total in work:
            for layout in LAYOUTS:
                log(f"[bench] replicas {shape} {total:,} {layout} (round {repeat}) ...")
                run = run_replicas_once(pg, shape, total, layout, repeat, workdir, args)
                runs.append(run)
                load = " -> ".join(f"{value:.2f}" for value in run.load)
                log(
                    f"[bench]   {run.outcome} {num(run.seconds, 3)} s, "
                    f"{num(run.tasks_per_s, 0)} tasks/s, {run.transactions} xacts, "
                    f"load {load} {run.detail}".rstrip()
                )
    return runs


# ---------------------------------------------------------------------------- commit rate


async def _commit_loop(dsn: str, seconds: float, connections: int) -> dict[str, Any]:
    opened = [await asyncpg.connect(dsn, timeout=10) for _ in range(connections)]
    try:
        await opened[0].execute("CREATE TABLE IF NOT EXISTS commit_probe (id bigserial, v int)")
        insert = "INSERT INTO commit_probe (v) VALUES ($1)"

        async def loop(connection: asyncpg.Connection, deadline: float) -> int:
            done = 0
            while done < COMMIT_RATE_MAX and time.perf_counter() < deadline:
                await connection.execute(insert, done)  # one implicit transaction each
                done += 1
            return done

        start = time.perf_counter()
        counts = await asyncio.gather(*(loop(c, start + seconds) for c in opened))
        elapsed = time.perf_counter() - start
    finally:
        for connection in opened:
            await connection.close()
    commits = sum(counts)
    return {
        "connections": connections,
        "seconds": elapsed,
        "commits": commits,
        "commits_per_s": commits / elapsed,
        "latency_ms_mean": 1000 * elapsed * connections / commits if commits else None,
    }


def commit_rate(pg: PgServer, seconds: float = COMMIT_RATE_SECONDS) -> list[dict[str, Any]]:
    """Single-row INSERT transactions (autocommit: INSERT + COMMIT in one round trip) in
    a loop over 1 and over 3 connections, on a fresh database; ~`seconds` each."""
    results = []
    with pg.fresh_database("commit_rate") as url:
        for connections in COMMIT_RATE_CONNECTIONS:
            results.append(
                asyncio.run(
                    asyncio.wait_for(_commit_loop(_dsn(url), seconds, connections), seconds + 60)
                )
            )
    return results


# ---------------------------------------------------------------------------- output


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _us(seconds: float | None, tasks: int) -> float | None:
    return None if seconds is None else 1e6 * seconds / tasks


def summarize(runs: Sequence[ReplicaRun]) -> list[dict[str, Any]]:
    """One entry per shape and layout: medians over the OK repeats."""
    keys: list[tuple[str, int, str]] = []
    for run in runs:
        if (run.shape, run.tasks, run.layout) not in keys:
            keys.append((run.shape, run.tasks, run.layout))
    summary = []
    for shape, tasks, layout in keys:
        group = [r for r in runs if (r.shape, r.tasks, r.layout) == (shape, tasks, layout)]
        ok = [r for r in group if r.outcome == OK]
        summary.append(
            {
                "shape": shape,
                "tasks": tasks,
                "layout": layout,
                "replicas": group[0].replicas,
                "trees": group[0].trees,
                "ok": len(ok),
                "runs": len(group),
                "seconds": _median([r.seconds for r in ok]),
                "tasks_per_s": _median([r.tasks_per_s for r in ok]),
                "create_seconds": _median([r.create_seconds for r in ok]),
                "transactions_per_task": _median([r.per_task(r.transactions) for r in ok]),
                "rows_written_per_task": _median([r.per_task(r.rows_written) for r in ok]),
                "rows_inserted_per_task": _median([r.per_task(r.rows_inserted) for r in ok]),
                "rows_updated_per_task": _median([r.per_task(r.rows_updated) for r in ok]),
                "rows_deleted_per_task": _median([r.per_task(r.rows_deleted) for r in ok]),
                "statements_per_task": _median(
                    [r.per_task(r.sql.get("statements")) if r.sql else None for r in ok]
                ),
                "round_trips_per_task_est": _median([r.per_task(r.round_trips) for r in ok]),
                "server_cpu_us_per_task": _median(
                    [1e6 * r.server_cpu_seconds / r.tasks for r in ok]
                ),
                "postgres_cpu_us_per_task": _median(
                    [_us(r.postgres_cpu_seconds, r.tasks) for r in ok]
                ),
                "write_commits_per_task": _median(
                    [r.per_task(r.sql.get("commit")) if r.sql else None for r in ok]
                ),
                "peak_rss_mb": _median([r.peak_rss_mb for r in ok]),
                "top_statements_per_task": top_statements(ok),
            }
        )
    return summary


def top_statements(runs: Sequence[ReplicaRun], top: int = TOP_STATEMENTS) -> list[list[Any]]:
    """The `top` most frequent statements of these runs, [per task, text] (their counts
    summed over the runs, / their tasks summed); empty without SQL texts."""
    counted = [run for run in runs if run.sql_texts]
    tasks = sum(run.tasks for run in counted)
    summed: dict[str, int] = {}
    for run in counted:
        for text, count in run.sql_texts.items():
            summed[text] = summed.get(text, 0) + count
    ranked = sorted(summed.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [[round(count / tasks, 3), text] for text, count in ranked]


def format_replicas(summary: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'shape':<6} {'tasks':>6}  {'layout':<28} {'ok':>3} {'median s':>9} "
        f"{'tasks/s':>8} {'create s':>8} {'xacts/task':>10} {'rows/task':>9} "
        f"{'commits/task':>12} {'stmts/task':>10} {'trips/task':>10} {'cpu us/task':>11} "
        f"{'pg us/task':>10}"
    )
    lines = [
        "Replicas on one PostgreSQL database (first CreateTaskTree sent -> last root seen "
        "completed; medians)",
        header,
        "-" * len(header),
    ]
    for item in summary:
        lines.append(
            f"{item['shape']:<6} {item['tasks']:>6,}  {item['layout']:<28} "
            f"{item['ok']}/{item['runs']} {num(item['seconds'], 3):>9} "
            f"{num(item['tasks_per_s'], 0):>8} {num(item['create_seconds'], 3):>8} "
            f"{num(item['transactions_per_task'], 2):>10} "
            f"{num(item['rows_written_per_task'], 2):>9} "
            f"{num(item['write_commits_per_task'], 3):>12} "
            f"{num(item['statements_per_task'], 2):>10} "
            f"{num(item['round_trips_per_task_est'], 2):>10} "
            f"{num(item['server_cpu_us_per_task'], 0):>11} "
            f"{num(item['postgres_cpu_us_per_task'], 0):>10}"
        )
    return "\n".join(lines)


def format_top_statements(summary: Sequence[dict[str, Any]]) -> str:
    """The most frequent statements per task of every shape and layout (SQL texts on)."""
    lines = []
    for item in summary:
        if item["top_statements_per_task"]:
            lines.append(f"{item['shape']} {item['tasks']:,} {item['layout']}:")
            lines += [
                f"  {per_task:>7.3f}/task  {text}"
                for per_task, text in item["top_statements_per_task"]
            ]
    if not lines:
        return ""
    return "\n".join(["Most frequent statements per task (TASKGROVE_BENCH_SQL_TEXTS=1)", *lines])


def format_commit_rate(results: Sequence[dict[str, Any]]) -> str:
    parts = [
        f"{item['connections']} connection{'s' if item['connections'] > 1 else ''}: "
        f"{item['commits_per_s']:,.0f} commits/s ({item['latency_ms_mean']:.3f} ms each)"
        for item in results
    ]
    return "PostgreSQL commit rate (single-row INSERT, autocommit): " + "; ".join(parts)


def as_json(runs: Sequence[ReplicaRun], rate: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "settings": {
            "timed_from": "send of the first CreateTaskTree to the GetTask poll reply "
            "showing the last root completed (polls 20 ms apart, on the replica each "
            "tree's request went to; A -> B: polled on B)",
            "transactions": "pg_stat_database xact_commit + xact_rollback of the run's "
            "database, after (servers stopped) - before (servers started, idle "
            f"{STATS_SETTLE_S} s)",
            "rows": "pg_stat_user_tables n_tup_ins/upd/del summed, same interval",
            "round_trips": "estimate: pool checkouts (pre-ping) + BEGIN + statements + "
            "COMMIT + ROLLBACK counted in the servers",
            "sql_texts": "with TASKGROVE_BENCH_SQL_TEXTS=1: each replica's 25 most frequent "
            "statements (160 characters) from the 'before' counters to its exit, summed",
            "sql": "the servers' SQLAlchemy cursor executions and transaction events "
            "(bench/sqlcount/sitecustomize.py), summed over the replicas, same interval "
            "(SIGUSR2 with the 'before' counters, then at exit)",
        },
        "summary": summarize(runs),
        "runs": [
            {**asdict(run), "rows_written": run.rows_written, "round_trips": run.round_trips}
            for run in runs
        ],
        "commit_rate": list(rate),
    }
