"""Assembling and running the server (the composition root: it may import every room).

storage (database, writer, reads) <- engine <- use-cases <- gRPC services; health goes
NOT_SERVING while storage fails and while shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import signal
import socket
import time
from collections.abc import Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from taskgrove_server import gc_tuning
from taskgrove_server.api.authentication import AuthInterceptor
from taskgrove_server.api.reflection import enable_reflection
from taskgrove_server.api.registration import (
    SERVICE_NAME,
    WORKER_SERVICE_NAME,
    add_task_service,
    add_worker_service,
)
from taskgrove_server.api.task_service import TaskService
from taskgrove_server.api.tls import server_credentials
from taskgrove_server.api.watch import EventStreamer
from taskgrove_server.api.worker_service import WorkerService
from taskgrove_server.auth import Authenticator
from taskgrove_server.clock import now_us
from taskgrove_server.config import MAX_REPLICA_ID_LENGTH, ConfigError, ServerConfig
from taskgrove_server.console import ConsoleServer, Upstream, split_http_address
from taskgrove_server.engine import Engine
from taskgrove_server.engine.ownership import Ownership
from taskgrove_server.engine.placement import Placement
from taskgrove_server.engine.routing import Router
from taskgrove_server.events.hub import EventHub
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.executors.builtin.command_policy import resolve_program
from taskgrove_server.executors.registry import COMMAND_EXECUTOR, ENABLE_COMMANDS
from taskgrove_server.executors.workers import RemoteExecutorSpec, WorkerPool
from taskgrove_server.executors.workers.declarations import load_declarations
from taskgrove_server.exposure import console_refusal, exposure_warning, is_loopback
from taskgrove_server.gc_stats import GcStats
from taskgrove_server.observability.assembly import Observability
from taskgrove_server.service.idempotency import Idempotency
from taskgrove_server.service.tasks import Tasks
from taskgrove_server.storage.commands import ANSWERS_CHANNEL, COMMANDS_CHANNEL, ClusterCommands
from taskgrove_server.storage.database import (
    FileLock,
    check_connection,
    check_db_url,
    make_directory,
    open_database,
    shown_url,
    sqlite_path,
)
from taskgrove_server.storage.event_feed import EventFeed
from taskgrove_server.storage.event_log import EventLog
from taskgrove_server.storage.leases import (
    ADOPT_CHANNEL,
    WORK_CHANNEL,
    TreeLeases,
    writer_fence,
)
from taskgrove_server.storage.migrations import migrate
from taskgrove_server.storage.notifications import Notifications, libpq_dsn
from taskgrove_server.storage.presence import PRESENCE_CHANNEL, ExecutorPresence
from taskgrove_server.storage.readers import create_reader
from taskgrove_server.storage.records import RemoteExecutorRow
from taskgrove_server.storage.request_locks import RequestLocks
from taskgrove_server.storage.sql_writes import SqlWrites
from taskgrove_server.storage.store import sql_store
from taskgrove_server.storage.writes import PruneHistory, SaveRemoteExecutor

log = logging.getLogger(__name__)


class TaskgroveServer:
    """One server process: call `start()`, then `stop()` (or use `serve()`)."""

    def __init__(
        self,
        config: ServerConfig,
        registry: ExecutorRegistry | None = None,
        *,
        tracer_provider: Any = None,
    ) -> None:
        """Raises ConfigError (or AuthConfigError) for a setting it cannot serve with, before
        anything is opened: an exposed address without protection, a bad TLS file, a number
        out of its bounds, a database URL the server cannot open."""
        config.validate()
        check_db_url(config.db_url)
        self.config = config
        if warning := exposure_warning(config):
            log.warning(warning)
        self.console: ConsoleServer | None = None
        """The web console, once started (None when off or its default port was taken)."""
        self._console_wanted = self._check_console()
        self._credentials = server_credentials(config)
        self.observability = Observability(config, tracer_provider=tracer_provider)
        self.registry = registry or ExecutorRegistry.default(
            load_entry_points=config.local_executors,
            local=config.local_executors,
            allowed_commands=config.allowed_commands,
            command_env=config.command_env,
            command_cwd=config.command_cwd,
            command_user=config.command_user,
        )
        if not config.worker_lease_seconds > 0:
            raise ConfigError(
                f"worker_lease_seconds must be positive, not {config.worker_lease_seconds}"
            )
        declared = load_declarations(config.executors_file) if config.executors_file else []
        for spec in declared:
            if spec.id in self.registry:
                raise ConfigError(f"executor {spec.id!r} is declared for workers but runs here")
        self.workers = WorkerPool(
            self.registry,
            lease_timeout_s=config.worker_lease_seconds,
            save=self._save_executor,
            declared=declared,
        )
        self.port = 0
        path = sqlite_path(config.db_url)
        self._lock = FileLock(path) if path is not None else None
        self._db = open_database(config.db_url, create_directory=False)
        self._reader = create_reader(config.db_url, self._db)
        self.hub = EventHub(config.watcher_buffer_events)
        # PostgreSQL: replicas may share the database; every event of each reaches this
        # hub through the feed (NOTIFY, reads, a poll). SQLite: one server, pass-through.
        self.notifications = Notifications.for_url(config.db_url)
        self.feed = EventFeed(
            self.hub, EventLog(self._reader) if self.notifications is not None else None
        )
        self.store = sql_store(self._db, config.db_url, self._reader, self.feed.local)
        self.store.writer.on_availability = self._storage_availability
        self.ownership = self._replica_ownership()
        self.request_locks = (
            RequestLocks(libpq_dsn(config.db_url)) if self.ownership is not None else None
        )
        self.router = (
            Router(ClusterCommands(self._db), self._leases, self.ownership)
            if self.ownership is not None
            else None
        )
        self.engine = Engine(
            self.store,
            self.registry,
            max_concurrency=config.max_concurrency,
            executor_limits=config.executor_limits,
            max_result_bytes=config.max_result_bytes,
            workers=self.workers,
            probe=self.observability.probe,
            ownership=self.ownership,
            router=self.router,
        )
        self.placement = (
            Placement(
                self.engine,
                self.workers,
                ExecutorPresence(self._db, self._leases.replica_id, config.tree_lease_seconds),
                renew_s=config.tree_lease_seconds / 3,
            )
            if self.ownership is not None
            else None
        )
        self.observability.watch(
            engine=self.engine, writer=self.store.writer, hub=self.hub, workers=self.workers
        )
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        # Raises AuthConfigError for an unreadable tokens or key file: nothing starts.
        self.authenticator = Authenticator(config) if config.auth_enabled else None
        interceptors = self.observability.interceptors()
        if self.authenticator is not None:
            interceptors.append(AuthInterceptor(self.authenticator))
        self._grpc = grpc.aio.server(options=options, interceptors=interceptors)
        self._health = health.aio.HealthServicer()
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._executors_read = 0.0

    def _check_console(self) -> bool:
        """Whether to serve the web console; ConfigError for an asked-for one that may not
        be served (the default one is only skipped, with a warning)."""
        if not self.config.console_enabled:
            return False
        split_http_address(self.config.http_address)
        if refusal := console_refusal(self.config):
            if not self.config.http_optional:
                raise ConfigError(refusal)
            log.warning("no web console: %s", refusal)
            return False
        return True

    async def _start_console(self) -> None:
        upstream = Upstream(
            self.port,
            tls_cert_file=self.config.tls_cert_file,
            max_message_bytes=self.config.max_message_bytes,
        )
        console = ConsoleServer(
            self.config.http_address,
            upstream,
            max_message_bytes=self.config.max_message_bytes,
            loopback=is_loopback(self.config.http_address),
        )
        try:
            await console.start()
        except OSError as error:
            await upstream.close()
            if not self.config.http_optional:
                raise
            log.warning("no web console: %s", " ".join(str(error).split()))
            return
        self.console = console

    async def _refresh_executors(self) -> None:
        """Replicas: learn the executors workers registered on other replicas (asked by a
        create naming an executor this replica does not know; at most every second)."""
        now = time.monotonic()
        if now - self._executors_read < 1.0:
            return
        self._executors_read = now
        self.workers.remember(
            RemoteExecutorSpec(row.id, row.description, row.input_schema)
            for row in await self.store.reads.remote_executors()
        )

    def _replica_ownership(self) -> Ownership | None:
        """On PostgreSQL a server is one replica among those sharing the database: it
        holds trees by lease (engine/ownership.py). SQLite has one server (a file lock)."""
        if self._db.dialect.name != "postgresql":
            return None
        self._leases = TreeLeases(self._db, self.config.replica_id, self.config.tree_lease_seconds)
        ownership = Ownership(self._leases, self.store.writer)
        fence = writer_fence(self._leases, ownership.tokens)
        backend = self.store.writer.backend
        assert isinstance(backend, SqlWrites)
        backend.fence = fence
        return ownership

    async def start(self) -> None:
        """Bind the address (OSError when it cannot), take the database (`DatabaseInUse` if
        another server has the SQLite file, `DatabaseUnavailable` when it cannot be opened,
        `SchemaTooNew`), migrate it, resume executing trees, then serve. Nothing is created
        before the address is bound; a failure releases what was taken."""
        self._bind()
        try:
            await self._start()
        except BaseException:
            if self.console is not None:
                await self.console.close()
            await self._grpc.stop(None)
            await self.feed.close()
            if self.notifications is not None:
                await self.notifications.close()
            await self.observability.close()
            if self._lock is not None:
                self._lock.release()
            await self._db.dispose()
            raise

    def _bind(self) -> None:
        # Checked with a socket of our own first: gRPC's failure also logs a line of its own.
        busy = _address_problem(self.config.address)
        try:
            if busy:
                raise RuntimeError(busy)
            if self._credentials is None:
                self.port = self._grpc.add_insecure_port(self.config.address)
            else:
                self.port = self._grpc.add_secure_port(self.config.address, self._credentials)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(
                f"cannot listen on {self.config.address}: {busy or 'the address is not usable'}; "
                "stop the other server or give another --address HOST:PORT (or "
                "TASKGROVE_ADDRESS; port 0 picks a free one)"
            )

    async def _start(self) -> None:
        await self.observability.start()  # a busy metrics port fails before anything is made
        if self._console_wanted:
            await self._start_console()  # likewise a busy --http
        make_directory(self.config.db_url)
        if self._lock is not None:
            self._lock.acquire()
        await check_connection(self._db, self.config.db_url)
        applied = await migrate(self._db)
        if applied:
            log.info("applied migrations %s", applied)
        if self.notifications is not None:
            await self.notifications.start()
            await self.feed.listen(self.notifications)  # before the head is read
            if self.router is not None and self.ownership is not None:
                await self.notifications.listen(COMMANDS_CHANNEL, self.router.addressed)
                await self.notifications.listen(ANSWERS_CHANNEL, self.router.answered)
                await self.notifications.listen(WORK_CHANNEL, self.ownership.wake_for)
                await self.notifications.listen(ADOPT_CHANNEL, self.ownership.adopt_for)
            if self.placement is not None:
                await self.notifications.listen(PRESENCE_CHANNEL, self.placement.wake_for)
        writer = self.store.writer
        if self.ownership is not None:
            if not self.config.replica_id:
                self._leases.replica_id = default_replica_id(socket.gethostname(), self.port)
            backend = self.store.writer.backend
            assert isinstance(backend, SqlWrites)
            backend.origin = self.feed.origin = self._leases.replica_id
            if self.placement is not None:
                self.placement.presence.replica_id = self._leases.replica_id
        await writer.start()
        self.feed.start(writer.last_sequence)
        self.workers.remember(
            RemoteExecutorSpec(row.id, row.description, row.input_schema)
            for row in await self.store.reads.remote_executors()
        )
        self.workers.start()
        if self.ownership is not None:  # before trees load: no end falls in between
            self.hub.observe(self.engine.events_published)
        await self.engine.start()
        if self.router is not None:
            self.router.start()
        if self.placement is not None:
            self.placement.start()
        tasks = Tasks(
            self.store,
            self.engine,
            self.registry,
            max_tree_size=self.config.max_tree_size,
            refresh_executors=self._refresh_executors if self.ownership is not None else None,
        )
        streamer = EventStreamer(
            self.hub,
            EventLog(self._reader),
            max_watchers=self.config.max_watchers,
            max_watchers_per_caller=self.config.max_watchers_per_caller,
            min_heartbeat_s=self.config.min_heartbeat_seconds,
            max_message_bytes=self.config.max_message_bytes,
        )
        add_task_service(
            TaskService(
                tasks,
                Idempotency(self.store.reads, writer, self.request_locks),
                streamer,
                max_message_bytes=self.config.max_message_bytes,
                auth_required=self.authenticator is not None,
                workers=self.workers,
            ),
            self._grpc,
        )
        add_worker_service(WorkerService(self.workers), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        if self.config.reflection:
            enable_reflection(self._grpc, (SERVICE_NAME, WORKER_SERVICE_NAME, health.SERVICE_NAME))
        await self._grpc.start()
        self._log_commands()
        await self._set_health(True)
        self._spawn(self._prune_periodically())

    def _log_commands(self) -> None:
        """Say what `command_executor` may run (once started: a failed start logs nothing)."""
        if COMMAND_EXECUTOR in self.registry:
            programs = ", ".join(
                f"{name} ({resolve_program(name)})" for name in self.config.allowed_commands
            )
            log.info("command_executor may run: %s", programs)
        elif any(off.id == COMMAND_EXECUTOR for off in self.registry.disabled()):
            log.info("command_executor is disabled; %s", ENABLE_COMMANDS)
        for name, limit in sorted(self.config.executor_limits.items()):
            if name not in self.registry:
                log.warning(
                    "executor limit %s=%d: no executor of that name here yet (it applies once "
                    "a worker serves one)",
                    name,
                    limit,
                )

    async def _save_executor(self, spec: RemoteExecutorSpec) -> None:
        row = RemoteExecutorRow(spec.id, spec.description, dict(spec.input_schema))
        self.store.writer.queue(SaveRemoteExecutor(row, now_us()))
        await self.store.writer.flush()

    async def prune_events(self) -> None:
        """Delete the history of trees that finished longer ago than the retention, and
        request ids older than theirs."""
        now = now_us()
        self.store.writer.queue(
            PruneHistory(
                events_before_us=now - int(self.config.event_retention_seconds * 1_000_000),
                keys_before_us=now - int(self.config.idempotency_retention_seconds * 1_000_000),
            )
        )
        await self.store.writer.flush()

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_seconds)
            try:
                await self.prune_events()
            except Exception:
                log.exception("pruning events failed")

    def _storage_availability(self, available: bool) -> None:
        if not self._stopping:
            self._spawn(self._set_health(available))

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self._health.set(service, status)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new work, let in-flight calls finish, then close storage cleanly."""
        self._stopping = True
        await self._health.enter_graceful_shutdown()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # Watch streams never finish by themselves: end them first (UNAVAILABLE) so that
        # clients resume elsewhere and the grace period serves the unary calls.
        if self.console is not None:
            await self.console.close()
        self.hub.close()
        self.engine.logs.followers.close()
        await self.workers.close()
        await self._grpc.stop(self.config.grace_seconds if grace is None else grace)
        if self.placement is not None:
            await self.placement.close()
        if self.router is not None:
            await self.router.close()
        await self.engine.close()
        await self.store.writer.close()
        if self.ownership is not None:
            # What this replica held is free now: the others take it over at once.
            with contextlib.suppress(Exception):
                await self._leases.announce_free()
        await self.feed.close()
        if self.notifications is not None:
            await self.notifications.close()
        if self.request_locks is not None:
            await self.request_locks.close()
        await self.store.reads.close()
        await self._db.dispose()
        await self.observability.close()
        if self._lock is not None:
            self._lock.release()


def default_replica_id(host: str, port: int) -> str:
    """HOST:PORT, with a long host name shortened to a digest so that it fits the column."""
    name = f"{host}:{port}"
    if len(name) <= MAX_REPLICA_ID_LENGTH:
        return name
    return f"{hashlib.sha256(host.encode()).hexdigest()[:32]}:{port}"


def _address_problem(address: str) -> str:
    """Why `address` (HOST:PORT) cannot be listened on, as far as a socket of our own can
    tell ("" when it can; port 0 always can)."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit():
        return "it is not HOST:PORT"
    if int(port_text) == 0:
        return ""
    try:
        infos = socket.getaddrinfo(
            host or None, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as error:
        return f"cannot resolve {host!r} ({error})"
    for family, kind, proto, _name, where in infos:
        with contextlib.suppress(OSError), socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return "the port is in use"
                return error.strerror or str(error)
    return ""


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    gc_tuning.tune()
    gc_stats = GcStats() if config.gc_stats else None
    if gc_stats is not None:
        gc_stats.install()
    server = TaskgroveServer(config)
    await server.start()
    host = config.address.rsplit(":", 1)[0]
    scheme = "tls" if config.tls_enabled else "plaintext"
    db = shown_url(config.db_url)
    print(f"taskgrove serving on {host}:{server.port} ({scheme}; db: {db})", flush=True)
    if server.console is not None:
        print(f"taskgrove web console on {server.console.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if server.authenticator is not None:
        loop.add_signal_handler(signal.SIGHUP, server.authenticator.reload)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    if gc_stats is not None:
        gc_stats.uninstall()
        print(gc_stats.line(), flush=True)
