"""Per-attempt logs: the lines executors log, capped, stored through the writer and
followed live (StreamTaskLogs)."""

from taskgrove_server.logs.attempt_log import AttemptLog
from taskgrove_server.logs.followers import Follower, LogFollowers, LogsClosed
from taskgrove_server.logs.task_logs import LogChunk, TaskLogs

__all__ = ["AttemptLog", "Follower", "LogChunk", "LogFollowers", "LogsClosed", "TaskLogs"]
