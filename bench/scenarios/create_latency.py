"""CreateTaskTree latency: a flat tree created (execute=False) again and again on one
fresh server, one call after another; one warm-up call, then the timed ones."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
from connection import client_config
from harness import ERROR, OK, TIMEOUT, Backend, rpc_error_text, started_server, tree_request
from sampler import MB, RssSampler
from taskgrove import AsyncClient
from trees import flat

CREATE_LATENCY_TASKS = 1_000


async def measure_creates(address: str, request: Any, count: int, limit_s: float) -> list[float]:
    """Round trips of `count` CreateTaskTree calls, one after another."""
    samples = []
    async with AsyncClient(config=client_config(address, timeout=limit_s)) as client:
        async with asyncio.timeout(limit_s):
            for _ in range(count):
                start = time.perf_counter()
                await client.stub.CreateTaskTree(request)
                samples.append(time.perf_counter() - start)
    return samples


def run_create_latency(
    backend: Backend, size: int, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """CreateTaskTree(execute=False) of a flat tree: one warm-up call, then
    `args.latency_repeats` timed ones."""
    timeout: float = args.timeout
    request = tree_request(flat(size), execute=False)
    result: dict[str, Any] = {
        "backend": backend.name,
        "shape": "flat",
        "tasks": size,
        "total_tasks": size + 1,
    }
    try:
        with (
            started_server(backend, f"create-{size}", workdir, args) as server,
            RssSampler(server.pid) as rss,
        ):
            samples = asyncio.run(
                measure_creates(server.address, request, args.latency_repeats + 1, timeout)
            )
    except TimeoutError:
        return {**result, "outcome": TIMEOUT, "detail": f"not done after {timeout:g} s"}
    except (RuntimeError, grpc.aio.AioRpcError) as error:
        return {**result, "outcome": ERROR, "detail": rpc_error_text(error)}
    timed = samples[1:]
    return {
        **result,
        "outcome": OK,
        "warmup_seconds": samples[0],
        "samples_seconds": timed,
        "median_seconds": statistics.median(timed),
        "min_seconds": min(timed),
        "max_seconds": max(timed),
        "peak_rss_mb": rss.peak_rss / MB,
    }


def format_create_latency(latency: dict[str, Any]) -> str:
    head = (
        f"{latency['backend']:<10} CreateTaskTree latency "
        f"({latency['tasks']:,} tasks, execute=False):"
    )
    if latency["outcome"] != OK:
        return f"{head} {latency['outcome']} ({latency.get('detail', '')})"
    return (
        f"{head} median {latency['median_seconds'] * 1000:,.1f} ms "
        f"(min {latency['min_seconds'] * 1000:,.1f}, max {latency['max_seconds'] * 1000:,.1f}, "
        f"{len(latency['samples_seconds'])} runs after 1 warm-up)"
    )
