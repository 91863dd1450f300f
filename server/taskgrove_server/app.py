"""Assembling and running the server: storage, engine, gRPC services, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from taskgrove_server.api.registration import SERVICE_NAME, add_task_service
from taskgrove_server.api.task_service import TaskService
from taskgrove_server.api.watch import EventStreamer
from taskgrove_server.clock import now_us
from taskgrove_server.config import ServerConfig
from taskgrove_server.engine import Engine
from taskgrove_server.events.hub import EventHub
from taskgrove_server.executors import ExecutorRegistry
from taskgrove_server.idempotency import Idempotency, prune_keys
from taskgrove_server.storage.database import create_engine
from taskgrove_server.storage.event_log import EventLog, prune_finished
from taskgrove_server.storage.migrations import migrate
from taskgrove_server.storage.repository import TaskRepository
from taskgrove_server.storage.writer import Writer

log = logging.getLogger(__name__)


class TaskgroveServer:
    """One server process: call `start()`, then `stop()` (or use `serve()`)."""

    def __init__(self, config: ServerConfig, registry: ExecutorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or ExecutorRegistry.default(
            allowed_commands=config.allowed_commands
        )
        self.port = 0
        self._db = create_engine(config.db_url)
        self.hub = EventHub(config.watcher_buffer_events)
        self._writer = Writer(self._db, self.hub.publish, url=config.db_url)
        self._event_log = EventLog(self._db)
        self._pruner: asyncio.Task[None] | None = None
        self._repository = TaskRepository(self._db)
        self.engine = Engine(
            self._repository,
            self._writer,
            self.registry,
            max_concurrency=config.max_concurrency,
            executor_limits=config.executor_limits,
        )
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self._grpc = grpc.aio.server(options=options)
        self._health = health.aio.HealthServicer()

    async def start(self) -> None:
        applied = await migrate(self._db)
        if applied:
            log.info("applied migrations %s", applied)
        await self._writer.start()
        self.hub.last_sequence = self._writer.last_sequence
        await self.engine.start()
        add_task_service(
            TaskService(
                self._repository,
                self.engine,
                self.registry,
                EventStreamer(self.hub, self._event_log),
                Idempotency(self._db, self._writer),
                max_tree_size=self.config.max_tree_size,
            ),
            self._grpc,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc
        )
        self.port = self._grpc.add_insecure_port(self.config.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.address}")
        await self._grpc.start()
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._pruner = asyncio.create_task(self._prune_periodically(), name="taskgrove-pruner")

    async def prune_events(self) -> None:
        """Delete the history of trees that finished longer ago than the retention."""
        cutoff = now_us() - int(self.config.event_retention_seconds * 1_000_000)
        self._writer.execute(prune_finished(cutoff))
        key_cutoff = now_us() - int(self.config.idempotency_retention_seconds * 1_000_000)
        self._writer.execute(prune_keys(key_cutoff))
        await self._writer.flush()

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.prune_interval_seconds)
            try:
                await self.prune_events()
            except Exception:
                log.exception("pruning events failed")

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new work, let in-flight calls finish, then close storage cleanly."""
        await self._health.enter_graceful_shutdown()
        if self._pruner is not None:
            self._pruner.cancel()
        # Watch streams never finish by themselves: end them first (UNAVAILABLE) so that
        # clients resume elsewhere and the grace period serves the unary calls.
        self.hub.close()
        await self._grpc.stop(self.config.grace_seconds if grace is None else grace)
        await self.engine.close()
        await self._writer.close()
        await self._db.dispose()

    async def wait_for_termination(self) -> None:
        await self._grpc.wait_for_termination()


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    server = TaskgroveServer(config)
    await server.start()
    host = config.address.rsplit(":", 1)[0]
    print(f"taskgrove serving on {host}:{server.port} (db: {config.db_url})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
