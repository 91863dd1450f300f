"""The metrics' own arithmetic (no server): buckets are cumulative, `le` is inclusive,
labelled series are created on first use, and the families render for Prometheus."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from taskgrove_server.config import ConfigError
from taskgrove_server.observability.http import split_address
from taskgrove_server.observability.metrics import Histogram, Metrics


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram((1.0, 2.0))
    for number in (0.5, 1.0, 1.5, 2.0, 3.0):
        histogram.observe(number)
    assert histogram.buckets() == [("1.0", 2), ("2.0", 4), ("+Inf", 5)]
    assert histogram.count == 5
    assert histogram.sum == 8.0


def test_families_render_with_their_labels() -> None:
    metrics = Metrics()
    metrics.attempts.get("sleep_executor", "completed").observe(0.2)
    metrics.attempts.get("sleep_executor", "completed").observe(0.4)
    metrics.rpcs.get("/taskgrove.v1.TaskService/GetTask", "NOT_FOUND").observe(0.001)
    metrics.committed(writes=3, events=7, seconds=0.002)
    metrics.task_finished("failed")
    metrics.gauge("taskgrove_running_attempts", "running", lambda: 4)
    metrics.labelled_gauge("taskgrove_tasks", "tasks", "status", lambda: {"pending": 2})
    registry = CollectorRegistry()
    registry.register(metrics)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    labels = (("executor", "sleep_executor"), ("outcome", "completed"))
    assert samples[("taskgrove_attempt_duration_seconds_count", labels)] == 2
    assert samples[("taskgrove_attempt_duration_seconds_sum", labels)] == pytest.approx(0.6)
    rpc = (("code", "NOT_FOUND"), ("method", "/taskgrove.v1.TaskService/GetTask"))
    assert samples[("taskgrove_grpc_requests_total", rpc)] == 1
    assert samples[("taskgrove_events_published_total", ())] == 7
    assert samples[("taskgrove_writer_batch_writes_sum", ())] == 3
    assert samples[("taskgrove_tasks_finished_total", (("status", "failed"),))] == 1
    assert samples[("taskgrove_running_attempts", ())] == 4
    assert samples[("taskgrove_tasks", (("status", "pending"),))] == 2


@pytest.mark.parametrize("address", ["9464", ":9464", "127.0.0.1:x", "127.0.0.1:70000"])
def test_bad_metrics_addresses(address: str) -> None:
    with pytest.raises(ConfigError):
        split_address(address)


def test_metrics_addresses() -> None:
    assert split_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert split_address("[::1]:9464") == ("::1", 9464)
