"""Scheduling and execution: which task runs when, and what happens when it ends.

`Engine` (engine.py) is the facade; see its docstring for the parts it is made of.
"""

from __future__ import annotations

from taskgrove_server.engine.engine import Engine

__all__ = ["Engine"]
