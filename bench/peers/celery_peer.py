"""Celery 5 peer (runs in build/peers/celery/venv, next to a running worker): sends N
trivial tasks, `flat` as one `group`, `chain` as one `chain` of immutable signatures, and
waits for every result; prints one JSON line with `seconds` (send -> all results ready).
Results are polled every --result-interval seconds (Celery's default for `get` is 0.5).

    CELERY_PEER_DIR=... python celery_peer.py --shape flat --tasks 100 --timeout 300
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

from celery import chain, group
from celery.exceptions import TimeoutError as ResultTimeout
from celery_app import noop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["flat", "chain"], required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--result-interval", type=float, default=0.5)
    args = parser.parse_args()
    signatures = [noop.si() for _ in range(args.tasks)]
    canvas = group(signatures) if args.shape == "flat" else chain(signatures)
    result: dict[str, Any] = {"outcome": "ERROR"}
    start = time.perf_counter()
    async_result = canvas.apply_async()
    result["send_seconds"] = time.perf_counter() - start
    try:
        async_result.get(timeout=args.timeout, interval=args.result_interval)
        result["seconds"] = time.perf_counter() - start
        result["outcome"] = "OK"
    except ResultTimeout:
        result["outcome"], result["detail"] = "TIMEOUT", f"not done after {args.timeout:g} s"
    result["client_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("PEER_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
