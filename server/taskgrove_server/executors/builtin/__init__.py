"""The executors every server has."""

from __future__ import annotations

from taskgrove_server.executors.base import Executor
from taskgrove_server.executors.builtin.aggregate_results import AGGREGATE_RESULTS
from taskgrove_server.executors.builtin.sleep import SLEEP
from taskgrove_server.executors.builtin.system_info import SYSTEM_INFO

BUILTIN_EXECUTORS: tuple[Executor, ...] = (SYSTEM_INFO, AGGREGATE_RESULTS, SLEEP)
