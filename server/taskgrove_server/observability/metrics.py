"""The server's Prometheus metrics, kept as plain numbers on the event loop.

Hot-path updates are O(1) and lock-free (everything runs on the event loop): a histogram
observation is one bisect and two additions into preallocated lists; labelled series are
found through nested dicts (no tuple per call). The Prometheus families are built only
when /metrics is scraped (`collect`), which is also when the gauges are read from the
engine, the worker pool and the event hub through the callables app.py registers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
DURATION_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Histogram:
    """Counts per bucket and a sum; read by `collect` as cumulative buckets."""

    __slots__ = ("_bounds", "_counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self._bounds, float("inf")), self._counts, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        return out


class _Labelled:
    """Histograms by two label values (e.g. executor, outcome)."""

    __slots__ = ("_bounds", "series")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.series: dict[str, dict[str, Histogram]] = {}

    def get(self, first: str, second: str) -> Histogram:
        inner = self.series.get(first)
        if inner is None:
            inner = self.series[first] = {}
        histogram = inner.get(second)
        if histogram is None:
            histogram = inner[second] = Histogram(self._bounds)
        return histogram

    def items(self) -> Iterator[tuple[str, str, Histogram]]:
        for first, inner in self.series.items():
            for second, histogram in inner.items():
                yield first, second, histogram


Gauge = Callable[[], float]
LabelledGauge = Callable[[], Mapping[str, float]]


class Metrics:
    """What the engine, the writer and the gRPC interceptor count (a prometheus_client
    collector: register it on a CollectorRegistry)."""

    def __init__(self) -> None:
        self.dispatch = Histogram(LATENCY_BUCKETS)
        self.attempts = _Labelled(DURATION_BUCKETS)
        self.finished: dict[str, int] = {"completed": 0, "failed": 0, "cancelled": 0}
        self.events_published = 0
        self.batch_writes = Histogram(SIZE_BUCKETS)
        self.batch_events = Histogram(SIZE_BUCKETS)
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        self.rpcs = _Labelled(LATENCY_BUCKETS)
        """By method, then code."""
        self._gauges: list[tuple[str, str, Gauge]] = []
        self._labelled_gauges: list[tuple[str, str, str, LabelledGauge]] = []

    # ----------------------------------------------------------------- sources

    def gauge(self, name: str, documentation: str, read: Gauge) -> None:
        """A gauge read at every scrape (`read` must be cheap and run on the loop)."""
        self._gauges.append((name, documentation, read))

    def labelled_gauge(
        self, name: str, documentation: str, label: str, read: LabelledGauge
    ) -> None:
        self._labelled_gauges.append((name, documentation, label, read))

    # ----------------------------------------------------------------- updates

    def task_finished(self, status: str) -> None:
        self.finished[status] = self.finished.get(status, 0) + 1

    def committed(self, writes: int, events: int, seconds: float) -> None:
        self.events_published += events
        self.batch_writes.observe(writes)
        self.batch_events.observe(events)
        self.commit_seconds.observe(seconds)

    # ----------------------------------------------------------------- scrape

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read in self._gauges:
            yield GaugeMetricFamily(name, documentation, value=read())
        for name, documentation, label, read_many in self._labelled_gauges:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for value, number in sorted(read_many().items()):
                family.add_metric([value], number)
            yield family
        finished = CounterMetricFamily(
            "taskgrove_tasks_finished",
            "Executable tasks that reached a terminal status, by status.",
            labels=["status"],
        )
        for status, count in sorted(self.finished.items()):
            finished.add_metric([status], count)
        yield finished
        yield CounterMetricFamily(
            "taskgrove_events_published",
            "Task events committed and published to watchers.",
            value=self.events_published,
        )
        yield _histogram(
            "taskgrove_dispatch_latency_seconds",
            "From a task's claim (pending -> in_progress) to its executor's start, the "
            "claim's commit included.",
            self.dispatch,
        )
        attempts = HistogramMetricFamily(
            "taskgrove_attempt_duration_seconds",
            "How long attempts ran, by executor and outcome "
            "(completed, failed, timeout, cancelled).",
            labels=["executor", "outcome"],
        )
        for executor, outcome, histogram in self.attempts.items():
            attempts.add_metric([executor, outcome], histogram.buckets(), histogram.sum)
        yield attempts
        yield _histogram(
            "taskgrove_writer_batch_writes",
            "Writes per committed transaction (group commit).",
            self.batch_writes,
        )
        yield _histogram(
            "taskgrove_writer_batch_events",
            "Events per committed transaction.",
            self.batch_events,
        )
        yield _histogram(
            "taskgrove_writer_commit_seconds",
            "How long a transaction of the writer took to apply and commit.",
            self.commit_seconds,
        )
        requests = CounterMetricFamily(
            "taskgrove_grpc_requests",
            "gRPC calls handled, by method and status code (streams counted when they end).",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "taskgrove_grpc_request_duration_seconds",
            "How long gRPC calls took, by method and status code (a stream: its lifetime).",
            labels=["method", "code"],
        )
        for method, code, histogram in self.rpcs.items():
            requests.add_metric([method, code], histogram.count)
            latency.add_metric([method, code], histogram.buckets(), histogram.sum)
        yield requests
        yield latency


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], histogram.buckets(), histogram.sum)
    return family
