"""The server's garbage-collector thresholds, set once at start.

A loaded tree is hundreds of thousands of long-lived objects, and every completion
allocates a few short-lived ones (its state change, its event) that outlive a young
collection while their batch waits for the writer. With CPython's default first
threshold (700) they reach the oldest generation quickly and trigger full collections
that scan every loaded node and free nothing (their objects die by reference count):
a 100,000-task flat tree ran 27 full collections, 3.7 s in total, up to 0.6 s each, all
on the event loop. A first threshold of 50,000 lets those objects die young: the same
run does no full collection, without a measurable change in memory (peak RSS 465 ->
419 MB). Nothing else changes: cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations (net of frees) between young collections; CPython's default is 700."""


def tune() -> None:
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
