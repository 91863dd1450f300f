"""Everything observability needs, built from the configuration: what app.py wires in.

observability = Observability(config)          # before the engine: its probe
Engine(..., probe=observability.probe)
grpc.aio.server(interceptors=[*observability.interceptors(), ...])
observability.watch(engine=..., writer=..., hub=..., workers=...)
await observability.start() ... await observability.close()
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from taskgrove_server.config import ServerConfig
from taskgrove_server.observability.grpc_observer import RpcObserver
from taskgrove_server.observability.observer import Observer
from taskgrove_server.observability.tracing import (
    AttemptTracer,
    grpc_interceptor,
    otlp_tracer_provider,
    tracing_requested,
)
from taskgrove_server.probes import CommitProbe

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from taskgrove_server.observability.http import MetricsServer
    from taskgrove_server.observability.metrics import Metrics


class _Engine(Protocol):
    @property
    def running(self) -> int: ...
    @property
    def ready(self) -> int: ...
    def status_counts(self) -> dict[str, int]: ...


class _Writer(Protocol):
    probe: CommitProbe | None


class _Hub(Protocol):
    @property
    def subscriber_count(self) -> int: ...


class _Workers(Protocol):
    def totals(self) -> tuple[int, int, int]: ...


class Observability:
    def __init__(self, config: ServerConfig, *, tracer_provider: Any = None) -> None:
        """Raises ConfigError for a bad metrics address, or tracing without its extra.
        `tracer_provider` (tests: an SDK provider with an in-memory exporter) turns
        tracing on whatever the configuration says."""
        self.metrics: Metrics | None = None
        self.registry: CollectorRegistry | None = None
        self._http: MetricsServer | None = None
        if config.metrics_address:
            # Imported only when asked for: off, they cost no start-up allocations (which
            # would age the young GC generation before gc_tuning raises its threshold).
            from prometheus_client import (
                CollectorRegistry,
                GCCollector,
                PlatformCollector,
                ProcessCollector,
            )

            from taskgrove_server.observability.http import MetricsServer, split_address
            from taskgrove_server.observability.metrics import Metrics

            split_address(config.metrics_address)  # refused before anything opens
            self.registry = CollectorRegistry()
            self.metrics = Metrics()
            self.registry.register(self.metrics)
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            self._http = MetricsServer(self.registry, config.metrics_address)
        self._owns_provider = tracer_provider is None and tracing_requested(config)
        if self._owns_provider:
            tracer_provider = otlp_tracer_provider(config)
        self.tracer_provider = tracer_provider
        tracer = AttemptTracer(tracer_provider) if tracer_provider is not None else None
        self.probe: Observer | None = (
            Observer(self.metrics, tracer) if self.metrics is not None or tracer else None
        )

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (0 before start or when off)."""
        return 0 if self._http is None else self._http.port

    def interceptors(self) -> list[Any]:
        """Outermost first: the trace span, then counting and error logs."""
        first = [] if self.tracer_provider is None else [grpc_interceptor(self.tracer_provider)]
        return [*first, RpcObserver(self.metrics)]

    def watch(self, *, engine: _Engine, writer: _Writer, hub: _Hub, workers: _Workers) -> None:
        """Read the gauges from these parts at each scrape; count the writer's commits."""
        metrics = self.metrics
        if self.probe is not None:
            writer.probe = self.probe
        if metrics is None:
            return
        metrics.labelled_gauge(
            "taskgrove_tasks",
            "Executable tasks of the trees in memory (executing trees), by status.",
            "status",
            engine.status_counts,
        )
        metrics.gauge(
            "taskgrove_ready_queue_depth",
            "Tasks ready to run that wait for a slot (queue entries).",
            lambda: engine.ready,
        )
        metrics.gauge(
            "taskgrove_running_attempts", "Attempts claimed or running now.", lambda: engine.running
        )
        metrics.gauge(
            "taskgrove_watchers", "WatchEvents streams open now.", lambda: hub.subscriber_count
        )
        metrics.gauge(
            "taskgrove_workers_connected",
            "Workers connected now.",
            lambda: workers.totals()[0],
        )
        metrics.gauge(
            "taskgrove_worker_slots", "Slots of the connected workers.", lambda: workers.totals()[1]
        )
        metrics.gauge(
            "taskgrove_worker_free_slots",
            "Free slots of the connected workers.",
            lambda: workers.totals()[2],
        )

    async def start(self) -> None:
        if self._http is not None:
            await self._http.start()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._owns_provider and self.tracer_provider is not None:
            # Exports what is left (bounded by the exporter's timeout) off the loop.
            await asyncio.to_thread(self.tracer_provider.shutdown)
