"""OpenTelemetry traces (the `tracing` extra): gRPC server spans and one span per attempt.

Off unless configured: `serve --otlp-endpoint URL` (env TASKGROVE_OTLP_ENDPOINT),
TASKGROVE_TRACING=1, or the standard OTEL_EXPORTER_OTLP_ENDPOINT /
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_TRACES_EXPORTER=otlp. opentelemetry is imported
only then.

Each attempt's span (`attempt EXECUTOR`) carries a *link* to the span of the call that
asked its tree to run (CreateTaskTree with execute, ExecuteTask; the latest such call per
tree). That call's span context is remembered in memory only, for the last
`MAX_REMEMBERED` trees: after a restart, attempts of trees executed before it have spans
without a link.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from taskgrove_server.config import ConfigError, ServerConfig

MAX_REMEMBERED = 10_000


def tracing_requested(config: ServerConfig, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(
        config.otlp_endpoint
        or config.tracing
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or "otlp" in env.get("OTEL_TRACES_EXPORTER", "").split(",")
    )


def otlp_tracer_provider(config: ServerConfig) -> Any:
    """A TracerProvider exporting over OTLP/gRPC (batched), service.name `taskgrove`
    unless OTEL_SERVICE_NAME says otherwise. Raises ConfigError without the extra."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigError(
            f"tracing needs the tracing extra: pip install 'taskgrove[tracing]' ({error})"
        ) from None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "taskgrove"}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def grpc_interceptor(provider: Any) -> Any:
    """opentelemetry-instrumentation-grpc's server interceptor (a span per call)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(tracer_provider=provider)  # type: ignore[no-untyped-call]


class AttemptTracer:
    """Spans of attempts, linked to the call that executed their tree."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = provider.get_tracer("taskgrove_server")
        self._origins: OrderedDict[str, Any] = OrderedDict()

    def remember(self, root_id: str) -> None:
        """Called in the executing call's context: keep its span context for the tree."""
        context = self._trace.get_current_span().get_span_context()
        if not context.is_valid:
            return
        self._origins[root_id] = context
        self._origins.move_to_end(root_id)
        while len(self._origins) > MAX_REMEMBERED:
            self._origins.popitem(last=False)

    def start(self, executor: str, task_id: str, root_id: str, attempt: int) -> Any:
        origin = self._origins.get(root_id)
        links = [self._trace.Link(origin)] if origin is not None else None
        return self._tracer.start_span(
            f"attempt {executor}",
            context=self._trace.set_span_in_context(self._trace.INVALID_SPAN),
            links=links,
            attributes={
                "taskgrove.executor": executor,
                "taskgrove.task_id": task_id,
                "taskgrove.root_id": root_id,
                "taskgrove.attempt": attempt,
            },
        )

    def end(self, span: Any, outcome: str, error: dict[str, Any] | None) -> None:
        span.set_attribute("taskgrove.outcome", outcome)
        if error is not None:
            span.set_attribute("taskgrove.error.reason", str(error.get("reason", "")))
            span.set_status(
                self._trace.Status(self._trace.StatusCode.ERROR, str(error.get("message", "")))
            )
        span.end()
