"""The server's own log lines: `text` (the default) or `json`, one object per line.

`serve --log-format json` (env TASKGROVE_LOG_FORMAT) writes each record to stderr as one
JSON object: `time` (UTC, ISO 8601), `level`, `logger`, `message`, then the record's
structured fields (for a failed attempt: task_id, root_id, executor, attempt, reason,
error_message, traceback; for a call that failed: rpc_method, code, reason, caller,
peer) and `exception` when the record has one. The level is TASKGROVE_LOG_LEVEL (INFO).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from taskgrove_server.config import ConfigError

FORMATS = ("text", "json")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str, level: str) -> None:
    """Set up the root logger (raises ConfigError for an unknown format or level)."""
    if log_format not in FORMATS:
        raise ConfigError(f"log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ConfigError(
            f"TASKGROVE_LOG_LEVEL={level}: give DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
