"""Scheduling and execution: which task runs when, and what happens when it ends."""

from __future__ import annotations

from taskgrove_server.engine.engine import Engine

__all__ = ["Engine"]
