"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

The room sits just below app/cli: it implements the hooks of `taskgrove_server.probes`
that the engine and the writer call, reads gauges from the parts app.py hands it, and
wraps gRPC calls in an interceptor. Nothing below it imports prometheus_client or
opentelemetry; opentelemetry is imported only when tracing is configured.
"""
